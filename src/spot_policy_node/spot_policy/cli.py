"""``spot-policy``: the command-line entry point (inspect a policy, benchmark, run the main jobs)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from spot_policy import paths
from spot_policy.errors import PolicyLoadError
from spot_policy.profile import ProfileError

EXAMPLES = """\
examples:
  spot-policy inspect logs/rsl_rl/spot_flat/2026-11-20_10-00-00
  spot-policy inspect logs/rsl_rl/spot_flat/2026-11-20_10-00-00/exported/policy.onnx --json
  spot-policy inspect latest --logs-root logs/rsl_rl/spot_flat
  spot-policy bench --json
  spot-policy sim                                  # default profile, shipped policy, real time
  spot-policy sim --profile stand --lockstep --out runs/stand
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
    from spot_policy.inspect_policy import as_json, as_text, describe
    from spot_policy.loader import load_policy

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
    from spot_policy import bench

    return bench.main(args)


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

    from spot_policy import bench

    bench.add_arguments(
        sub.add_parser(
            "bench",
            help="measure the policy step, DDS latency and more, each beside its baseline",
            description="Benchmarks, each figure next to a baseline measured in the same run. Prints a table "
            "(or JSON); the goals are the project's speed goals.",
        )
    )
    sub.choices["bench"].set_defaults(func=cmd_bench)

    from spot_policy import sim_job

    p = sub.add_parser(
        "sim",
        help="the main job: the policy drives Spot in MuJoCo through ROS 2, scripted by a profile",
        description="Start the sim bridge, the policy node, a profile player and a recorder as separate "
        "processes over DDS (the same nodes and parameter files as sim.launch.py), play the profile, and "
        "write a run folder: summary.json, tracking.png, video.mp4, bag/ (MCAP), logs/.",
    )
    sim_job.add_arguments(p)
    p.set_defaults(func=lambda a: sim_job.main(a))
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
