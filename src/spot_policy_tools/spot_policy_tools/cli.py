"""``spot-policy``: the command-line entry point (inspect a policy, benchmark, run the main jobs)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from spot_policy.core import paths
from spot_policy.core.errors import PolicyLoadError
from spot_policy.core.profile import ProfileError

EXAMPLES = """\
examples:
  spot-policy inspect logs/rsl_rl/spot_flat/2026-11-20_10-00-00
  spot-policy inspect logs/rsl_rl/spot_flat/2026-11-20_10-00-00/exported/policy.onnx --json
  spot-policy inspect latest --logs-root logs/rsl_rl/spot_flat
  spot-policy bench --json
  spot-policy sim                                  # default profile, shipped policy, real time
  spot-policy sim --profile stand --lockstep --out runs/stand
  spot-policy sim --teleop keyboard                # drive Spot from this terminal (or --teleop gamepad)
  spot-policy sim --foxglove                       # live view for Foxglove (ws://127.0.0.1:8765); drive in the browser
  spot-policy robot --emulator --profile default --out runs/robot   # the robot path on the Spot API emulator
  spot-policy emulator --port 50443 --fault estop@30               # a Spot to dry-run robot.launch.py against
  spot-policy replay runs/stand/bag --policy spot_flat_mjx --out runs/stand/replay
  spot-policy evaluate --suite quick --workers 2 --out runs/eval   # judge a policy across scenarios
  spot-policy doctor --backend isaac                # what the Isaac Sim backend needs on this machine
"""


def _add_policy_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--logs-root",
        type=Path,
        default=None,
        help="folder holding timestamped runs, for PATH 'latest' (default: logs/rsl_rl/spot_flat)",
    )
    parser.add_argument(
        "--providers",
        default="tensorrt,cuda,cpu",
        help="ONNX Runtime execution providers in preference order (default: tensorrt,cuda,cpu)",
    )
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default: 1)")


def cmd_inspect(args: argparse.Namespace) -> int:
    from spot_policy.core.loader import load_policy
    from spot_policy_tools.inspect_policy import as_json, as_text, describe

    notes: list[str] = []
    loaded = load_policy(
        args.path,
        providers=args.providers.split(","),
        intra_op_threads=args.threads,
        logs_root=args.logs_root,
        policies_dir=paths.config_dir() / "policies",
        log=notes.append,
    )
    info = describe(loaded, args.threads)
    info["notes"] += notes
    print(as_json(info) if args.json else as_text(info))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from spot_policy_tools.bench import run as bench

    return bench.main(args)


def cmd_recover(args: argparse.Namespace) -> int:
    from spot_policy.ros.bag_recorder import BagRecorderError, recover_bag

    out = args.out or args.bag.with_name(args.bag.name + "-recovered")
    try:
        counts = recover_bag(args.bag, out)
    except BagRecorderError as exc:
        print(f"spot-policy recover: error: {exc}", file=sys.stderr)
        return 2
    print(f"{out}: {sum(counts.values())} messages on {len(counts)} topics recovered")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    if args.in_sim:
        from spot_policy_tools import replay_in_sim

        return replay_in_sim.main(args)
    from spot_policy_tools import replay

    return replay.main(args)


def cmd_emulator(args: argparse.Namespace) -> int:
    try:
        from spot_hw_bridge.emulator import server
    except ImportError as exc:
        print(f"spot-policy emulator: error: {exc}; fix: run scripts/setup (installs spot_hw_bridge)", file=sys.stderr)
        return 2
    return server.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spot-policy",
        description="Run Isaac Lab Spot locomotion policies over ROS 2: inspect a policy, benchmark, run the jobs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "inspect",
        help="print the resolved policy spec of an Isaac Lab run",
        description="Resolve and check a policy, then print its spec: observation terms with slices, action, "
        "joint order, per-joint defaults/gains/limits, command ranges, timing and the ONNX model.",
    )
    p.add_argument(
        "path",
        help="an Isaac Lab run folder, its exported/policy.onnx, 'latest', or a policy shipped in config/policies",
    )
    _add_policy_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_inspect)

    from spot_policy_tools.bench import run as bench

    bench.add_arguments(
        sub.add_parser(
            "bench",
            help="measure the policy step, DDS latency and more, each beside its baseline",
            description="Benchmarks, each figure next to a baseline measured in the same run. Prints a table "
            "(or JSON); the goals are the project's speed goals.",
        )
    )
    sub.choices["bench"].set_defaults(func=cmd_bench)

    from spot_policy_tools import sim_job

    p = sub.add_parser(
        "sim",
        help="the main job: the policy drives Spot in MuJoCo through ROS 2, scripted by a profile",
        description="Start the sim bridge, the policy node, a profile player and a recorder as separate "
        "processes over DDS (the same nodes and parameter files as sim.launch.py), play the profile, and "
        "write a run folder: summary.json, tracking.png, video.mp4, bag/ (MCAP), logs/.",
    )
    sim_job.add_arguments(p)
    p.set_defaults(func=lambda a: sim_job.main(a))

    p = sub.add_parser(
        "replay",
        help="re-run a recorded bag through the policy offline and compare with what the node published",
        description="Feed a bag's inputs, steps and mode switches to the policy core (no DDS) and compare "
        "joint_command, observations and raw actions with the recording: max/mean error per joint and per "
        "observation term, the first divergence, a plot. Exit 1 beyond the tolerance. With another policy "
        "than the recorded one: a comparison of the two, no verdict.",
    )
    p.add_argument("bag", type=Path, help="a rosbag2 bag folder (or its .mcap) recorded with the policy node")
    p.add_argument(
        "--policy",
        default=None,
        help="run folder, policy.onnx or shipped policy name to replay with (default: the one the bag names, "
        "checked against its recorded ONNX SHA-256); another policy compares the two on the same inputs",
    )
    p.add_argument("--out", type=Path, default=None, help="folder to write replay.json and replay.png into")
    p.add_argument("--tolerance", type=float, default=1e-6, help="largest accepted absolute difference (default: 1e-6)")
    p.add_argument(
        "--in-sim",
        action="store_true",
        help="instead: start the MuJoCo sim at the log's first pose, play the logged mode switches and cmd_vel "
        "into the same policy (lockstep) and compare logged vs simulated base velocity, height, joint positions "
        "and targets (in_sim.json, in_sim.png in --out)",
    )
    p.set_defaults(func=cmd_replay)

    from spot_policy_tools import robot_job

    p = sub.add_parser(
        "robot",
        help="the robot path end to end: hw bridge + policy node on the Spot API emulator (or a Spot)",
        description="Start the hw bridge, the policy node, a profile player and a recorder as separate processes "
        "over DDS (the same nodes and parameter files as robot.launch.py) against the Spot API emulator "
        "(--emulator) or a real Spot (--hostname), play the profile, and write the sim job's run folder.",
    )
    robot_job.add_arguments(p)
    p.set_defaults(func=lambda a: robot_job.main(a))

    from spot_policy_tools.evaluate import cli as evaluate_cli

    p = sub.add_parser(
        "evaluate",
        help="judge a policy across scenarios (terrain, pushes, sensing, faults) with a scorecard to gate on",
        description="Run the shipped sim bridge and policy node over DDS, in lockstep, one ROS domain per trial, "
        "through a suite of YAML scenarios (config/scenarios); score every trial on the simulator's ground truth, "
        "judge each scenario against its thresholds, and write results.json, timing.json and report.html. "
        "Reads only the policy's run folder (env.yaml + ONNX).",
        epilog=evaluate_cli.EXAMPLES + "\n" + (evaluate_cli.__doc__ or "").split("\n\n", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate_cli.add_arguments(p)
    p.set_defaults(func=lambda a: evaluate_cli.main(a))

    p = sub.add_parser(
        "recover",
        help="make a bag whose recorder was killed readable again (every message up to the cut)",
        description="A recorder that died (SIGKILL, power loss) leaves an MCAP without its summary and no "
        "metadata.yaml. This writes every message up to the last complete chunk as a new bag.",
    )
    p.add_argument("bag", type=Path, help="the bag folder (or its .mcap) left by the killed recorder")
    p.add_argument("--out", type=Path, default=None, help="the recovered bag folder (default: BAG-recovered)")
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser(
        "emulator",
        help="serve the Spot API (TLS gRPC, MuJoCo body) for dry runs of the robot set-up, with faults",
        description="A Spot API emulator bosdyn-client talks to as to a robot: it accepts the login in "
        "BOSDYN_CLIENT_USERNAME/BOSDYN_CLIENT_PASSWORD, prints its port and CA certificate, and injects faults.",
    )
    p.set_defaults(func=cmd_emulator)
    try:  # the emulator lives in spot_hw_bridge; without it the command says how to get it
        from spot_hw_bridge.emulator.server import add_arguments as add_emulator_arguments

        add_emulator_arguments(p)
    except ImportError:
        pass

    from spot_policy_tools import doctor

    p = sub.add_parser(
        "doctor",
        help="check what the Isaac Sim backend needs, one line each: ok, or the fix",
        description="Python, Isaac Sim release, GPU, EULA, the policy's physics scene, the Spot USD and its joint "
        "names against the contract (the last two start Isaac Sim where the rest allows). Exit 1 on a failure.",
    )
    doctor.add_arguments(p)
    p.set_defaults(func=doctor.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (PolicyLoadError, ProfileError) as exc:
        print(f"spot-policy: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
