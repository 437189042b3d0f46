"""``spot-policy sim``: the main job. A policy drives Spot in the simulator through the topic
contract, scripted by a command profile, and leaves a run folder behind.

Separate processes over real DDS, started from the same node specs and parameter files as
``sim.launch.py``: the sim bridge, the policy node, a profile player (the scripted command source)
and a recorder. Afterwards: ``summary.json``, ``tracking.png``, ``video.mp4`` and the MCAP bag.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from spot_policy.core import contract, paths
from spot_policy.core.profile import Profile, load_profile
from spot_policy.ros import bringup
from spot_policy_tools import live_session
from spot_policy_tools.launcher import NodeGroup, NodeProcess, follow


class JobError(RuntimeError):
    """The job could not run to the end; the message says which node and why."""


def default_out(kind: str) -> Path:
    return Path("runs") / f"{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        default=None,
        help="command profile: a YAML file or a name in config/profiles (default: default; none with --teleop)",
    )
    parser.add_argument("--policy", default="spot_flat_mjx", help="run folder, policy.onnx or shipped policy name")
    parser.add_argument("--out", type=Path, default=None, help="run folder to write (default: runs/sim-<time>)")
    parser.add_argument(
        "--lockstep", action="store_true", help="deterministic and as fast as possible instead of real time"
    )
    parser.add_argument(
        "--backend",
        default="mujoco",
        choices=("mujoco", "isaac"),
        help="physics of the sim bridge: mujoco (embedded) or isaac (Isaac Sim 5.x or 6.x; docs/ISAAC_SIM.md)",
    )
    parser.add_argument("--gui", action="store_true", help="open the MuJoCo viewer (needs a display)")
    parser.add_argument("--no-video", action="store_true", help="skip rendering video.mp4")
    parser.add_argument("--friction", type=float, default=None, help="ground friction (default: sim_bridge.yaml)")
    parser.add_argument("--payload", type=float, default=None, help="payload mass on the body, kg")
    parser.add_argument(
        "--bridge",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any sim bridge parameter (config/sim_bridge.yaml), e.g. terrain=slope, terrain_slope_deg=8, "
        "sense_latency_ms=20, imu_gyro_bias=[0,0,0.05]; repeatable",
    )
    parser.add_argument("--domain", type=int, default=None, help="ROS domain id (default: a free isolated one)")
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="soak: play the profile's segments over and over for this long (real time, no recording) and "
        "report per minute the policy step's latency, missed deadlines and each process's memory (soak.json)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a moving segment misses its tracking thresholds or Spot fell"
    )
    live_session.add_view_arguments(parser)


def bridge_overrides(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings as sim bridge parameters, values read as YAML (numbers, lists, words)."""
    import yaml

    params: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--bridge {item!r} is not KEY=VALUE; fix: e.g. --bridge terrain=slope")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ValueError(
                f"--bridge {item!r}: the value is not YAML; fix: e.g. --bridge payload_offset=[0.1,0,0]"
            ) from None
        key = key.strip()
        # ROS parameters are typed: numbers are doubles (a seed is an integer), a list holds one type.
        if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            value = [float(v) for v in value]
        elif isinstance(value, int) and not isinstance(value, bool) and not key.endswith("_seed"):
            value = float(value)
        params[key] = value
    return params


def run_nodes(
    specs: list[bringup.NodeSpec],
    player: bringup.NodeSpec,
    out: Path,
    profile: Profile,
    wall_limit_s: float,
    env: dict[str, str] | None = None,
    on_started: Callable[[NodeGroup], None] | None = None,
) -> None:
    """Start ``specs`` and the player, show the player's progress, stop everything when it ends.

    ``on_started``: called with the running group (its processes' pids), e.g. to watch them."""
    group = NodeGroup(out / "logs", env)
    try:
        for spec in specs:
            group.start(spec)
        player_proc = group.start(player)
        if on_started is not None:
            on_started(group)
        position, start = 0, time.monotonic()
        while True:
            lines, position = follow(player_proc.log_path, position)
            for line in lines:
                if "segment" in line or "profile" in line or "ERROR" in line:
                    print(f"  [{time.monotonic() - start:6.1f} s] {line.split(']: ', 1)[-1]}", flush=True)
            code = player_proc.poll()
            if code is not None:
                if code != 0:
                    raise JobError(f"profile_player exited with {code}:\n{player_proc.tail(8)}")
                break
            broken = next((p for p in group.procs if p is not player_proc and p.poll() is not None), None)
            if broken is not None:
                await_command_loss(group, broken)
                raise JobError(f"{broken.name} exited with {broken.poll()}:\n{broken.tail(12)}")
            if time.monotonic() - start > wall_limit_s:
                raise JobError(f"the profile did not finish within {wall_limit_s:.0f} s (wall clock)")
            time.sleep(0.2)
    finally:
        # The recorder first (it flushes the bag), then the rest in reverse start order.
        group.stop(order=lambda p: 0 if p.name == "recorder" else 1)


#: joint_states readers a realtime job starts with its bridge: the policy node and the recorder.
JOB_STATE_READERS = 2
#: How long a job lets the bridge take it, at most. Its bound is 0.1 s (of sim time in simulation),
#: but a node killed while Fast DDS's shared-memory transport held its port's lock leaves every
#: process that writes to it blocked in DDS (the GIL held) for a second or more, 1 s per try
#: (docs/FAULTS.md, "A node killed outright"); seen here: 2.1 s.
COMMAND_LOSS_WAIT_S = 6.0
#: The bridges whose command-loss line a job waits for (both log ``contract.COMMAND_LOSS``).
BRIDGES = ("sim_bridge", "hw_bridge")


def await_command_loss(group: NodeGroup, dead: NodeProcess) -> None:
    """When the policy node died, stop the bridge only once it has taken its command-loss behaviour
    by itself (as on a robot whose node died, docs/FAULTS.md), so a run always shows that reaction;
    at most :data:`COMMAND_LOSS_WAIT_S`. The job's 0.2 s poll alone could stop it before its timeout."""
    if dead.name != "policy_node":
        return
    bridge = next((p for p in group.procs if p.name in BRIDGES and p.poll() is None), None)
    end = time.monotonic() + COMMAND_LOSS_WAIT_S
    while bridge is not None and bridge.poll() is None and time.monotonic() < end:
        if contract.COMMAND_LOSS in bridge.tail(20):
            return
        time.sleep(0.02)


def make_report(out: Path, bag: Path, profile: Profile, video: bool, extra: dict) -> bool:
    """summary.json, tracking.png (and video.mp4) from the bag; prints the table; returns passed."""
    from spot_policy_tools.run_report import SUMMARY_NAME, format_table, write_run_report

    report = write_run_report(bag, profile, out)
    summary = out / SUMMARY_NAME
    summary.write_text(json.dumps({**json.loads(summary.read_text()), **extra}, indent=2))
    print(format_table(report))
    if video:
        try:  # optional: the renderer lives with the MuJoCo model in spot_sim_bridge
            from spot_policy_tools.replay_video import render_video
        except ImportError:
            print("video: not rendered (spot_sim_bridge is not installed)", file=sys.stderr)
            return report.passed
        try:
            render_video(bag, out / "video.mp4")
        except Exception as exc:  # a missing GL library must not lose the run's numbers
            print(f"video: not rendered ({type(exc).__name__}: {exc})", file=sys.stderr)
    return report.passed


def main(args: argparse.Namespace) -> int:
    from spot_policy.core.locate import locate_run
    from spot_policy.ros.dds_isolation import claim_domain, isolate_environment

    by_hand = live_session.is_interactive(args)
    if args.teleop is not None and args.profile is not None:
        print("spot-policy sim: error: --teleop drives Spot by hand; fix: drop --profile", file=sys.stderr)
        return 2
    if not by_hand and args.profile is None:
        args.profile = "default"
    profile = None if by_hand else load_profile(args.profile, paths.config_dir() / "profiles")
    locate_run(args.policy, policies_dir=paths.config_dir() / "policies")  # fail early, one line
    out = (args.out or default_out("sim")).resolve()
    if out.exists() and any(out.iterdir()):
        print(f"spot-policy sim: error: {out} is not empty; fix: choose another --out", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    domain = args.domain if args.domain is not None else claim_domain()
    if args.domain is not None:
        isolate_environment(domain)
    try:
        bridge_params = bridge_overrides(args.bridge)
    except ValueError as exc:
        print(f"spot-policy sim: error: {exc}", file=sys.stderr)
        return 2
    if args.friction is not None:
        bridge_params["friction"] = args.friction
    if args.payload is not None:
        bridge_params["payload_kg"] = args.payload
    if not args.lockstep:  # the policy node and the recorder (a soak has none) get the first instant
        readers = 1 if args.duration is not None else JOB_STATE_READERS
        bridge_params.setdefault("start_after_readers", readers)
    specs = bringup.sim_nodes(
        args.policy,
        args.backend,
        realtime=not args.lockstep,
        gui=args.gui,
        teleop=False,
        extra_bridge_params=bridge_params,
    )
    if args.duration is not None:
        return run_soak(args, specs, profile, out, domain)
    # The recorder first, and the policy node's first step only once it reads them (replay needs every one).
    specs = bringup.recorded(specs, out / "bag", lockstep=args.lockstep)
    specs += live_session.view_specs(args, accept_cmd_vel=by_hand)
    mode = "lockstep" if args.lockstep else "realtime"
    if by_hand:
        print(f"spot-policy sim: driven by hand, policy {args.policy}, {mode}, ROS domain {domain}; run folder {out}")
        return live_session.run_sim_session(args, specs, out, args.lockstep)
    assert profile is not None
    print(f"spot-policy sim: profile '{profile.name}' ({profile.duration:.1f} s), policy {args.policy}, {mode}, "
          f"ROS domain {domain}; run folder {out}")  # fmt: skip
    # Isaac Sim's first start (Kit, shader caches, the Spot USD from the assets root) takes minutes.
    limit = (90.0 if args.backend == "mujoco" else 600.0) + profile.duration * (2.0 if args.lockstep else 1.5)
    started = time.monotonic()
    try:
        run_nodes(specs, bringup.profile_player(args.profile, recorded=True), out, profile, limit)
    except JobError as exc:
        print(f"spot-policy sim: error: {exc}", file=sys.stderr)
        return 1
    extra = {"mode": mode, "policy": args.policy, "wall_time_s": round(time.monotonic() - started, 2)}
    ok = make_report(out, out / "bag", profile, not args.no_video, extra)
    print(f"run folder: {out} (summary.json, tracking.png{', video.mp4' if not args.no_video else ''}, bag/, logs/)")
    return 1 if args.strict and not ok else 0


def run_soak(args: argparse.Namespace, specs: list, profile: Profile | None, out: Path, domain: int) -> int:
    """``--duration``: the soak run (spot_policy_tools.soak)."""
    from spot_policy_tools import soak

    if args.lockstep or profile is None:
        print("spot-policy sim: error: --duration runs in real time from a profile; fix: drop --lockstep/--teleop",
              file=sys.stderr)  # fmt: skip
        return 2
    profile_path = soak.write_profile(profile, args.duration, out / "soak_profile.yaml")
    cycled = load_profile(str(profile_path), paths.config_dir() / "profiles")
    print(f"spot-policy sim: soak of {args.duration:.0f} s ('{profile.name}' segments over and over), policy "
          f"{args.policy}, real time, ROS domain {domain}; run folder {out}")  # fmt: skip
    monitors: list[soak.SoakMonitor] = []

    def watch(group: NodeGroup) -> None:
        monitors.append(soak.SoakMonitor({p.name: p.proc.pid for p in group.procs}).start())

    try:
        run_nodes(
            specs,
            bringup.profile_player(str(profile_path), recover=True),
            out,
            cycled,
            120.0 + 1.2 * args.duration,
            None,
            watch,
        )
        code = 0
    except JobError as exc:
        print(f"spot-policy sim: error: {exc}", file=sys.stderr)
        code = 1  # what was measured up to the failure is still reported
    finally:
        for monitor in monitors:
            monitor.stop()
    report = monitors[0].report() if monitors else {"minutes": [], "memory_growth": {}}
    report["recoveries"] = soak.recoveries(out / "logs" / "profile_player.log")
    print(soak.format_report(report))
    print(f"wrote {soak.write_report(report, out)}")
    return code
