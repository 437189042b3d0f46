"""``spot-policy robot``: the robot path end to end — hw bridge, policy node, profile — on the
Spot API emulator (``--emulator``, any machine) or a real Spot (``--hostname``).

The same node specs and parameter files as ``robot.launch.py``, started as processes over real
DDS, with the same profile player and recorder as ``spot-policy sim``; the run folder is the sim
main job's (``summary.json``, ``tracking.png``, ``video.mp4``, ``bag/``, ``logs/``) plus the
robot side's account in ``summary.json`` (``robot``: commands the robot received and ignored as
expired, the state stream's rate, whether the lease came back).

With ``--emulator`` the emulator runs in this process, with a login made up for the run and
handed to the bridge through its environment only.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

from spot_policy.core import paths
from spot_policy.core.profile import load_profile
from spot_policy.core.realtime_gc import freeze_startup_heap
from spot_policy.ros import bringup
from spot_policy_tools import live_session
from spot_policy_tools.sim_job import JobError, default_out, make_report, run_nodes

ENV_USERNAME = "BOSDYN_CLIENT_USERNAME"
ENV_PASSWORD = "BOSDYN_CLIENT_PASSWORD"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--emulator", action="store_true", help="run against the Spot API emulator (MuJoCo body)")
    target.add_argument(
        "--hostname", default=None, help="a real Spot's address (credentials from BOSDYN_CLIENT_USERNAME/PASSWORD)"
    )
    parser.add_argument("--port", type=int, default=443, help="real Spot: API port (default 443)")
    parser.add_argument("--ca-cert", default="", help="real Spot: CA certificate (default: the SDK's robot CA)")
    parser.add_argument(
        "--profile", default="default", help="command profile: a YAML file or a name in config/profiles"
    )
    parser.add_argument("--policy", default="spot_flat_mjx", help="run folder, policy.onnx or shipped policy name")
    parser.add_argument("--out", type=Path, default=None, help="run folder to write (default: runs/robot-<time>)")
    parser.add_argument("--no-video", action="store_true", help="skip rendering video.mp4")
    parser.add_argument("--domain", type=int, default=None, help="ROS domain id (default: a free isolated one)")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME@SECONDS",
        help="emulator: inject a fault SECONDS after the bridge holds the lease; latency as latency=S@SECONDS "
        "(faults: spot-policy emulator --help)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a moving segment misses its tracking thresholds or Spot fell"
    )
    parser.add_argument(
        "--on-expiry",
        choices=("stand", "end"),
        default="stand",
        help="emulator: when the joint command in force expires with no newer one, the robot stands and the next "
        "command resumes (stand, default), or joint control ends (end); spot-policy emulator --help says why",
    )
    live_session.add_view_arguments(parser, teleop=False)  # a view of the run; commands come from the profile


def _schedule(faults: list[str]) -> list[tuple[str, float]]:
    out = []
    for text in faults:
        name, _, at = text.partition("@")
        try:
            out.append((name, float(at or 0.0)))
        except ValueError:
            raise JobError(f"--fault '{text}' is not NAME@SECONDS") from None
    return sorted(out, key=lambda item: item[1])


def main(args: argparse.Namespace) -> int:
    from spot_policy.core.locate import locate_run
    from spot_policy.ros.dds_isolation import claim_domain, isolate_environment

    profile = load_profile(args.profile, paths.config_dir() / "profiles")
    locate_run(args.policy, policies_dir=paths.config_dir() / "policies")  # fail early, one line
    out = (args.out or default_out("robot")).resolve()
    if out.exists() and any(out.iterdir()):
        print(f"spot-policy robot: error: {out} is not empty; fix: choose another --out", file=sys.stderr)
        return 2
    try:
        faults = _schedule(args.fault)
    except JobError as exc:
        print(f"spot-policy robot: error: {exc}", file=sys.stderr)
        return 2
    if faults and not args.emulator:
        print("spot-policy robot: error: --fault needs --emulator (faults are the emulator's)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    domain = args.domain if args.domain is not None else claim_domain()
    if args.domain is not None:
        isolate_environment(domain)
    env = dict(os.environ)
    emulator = None
    if args.emulator:
        try:  # the robot package, needed only for this command
            from spot_hw_bridge.emulator import FAULTS, SpotEmulator
        except ImportError as exc:
            print(f"spot-policy robot: error: {exc}; fix: run scripts/setup (installs spot_hw_bridge)", file=sys.stderr)
            return 2

        unknown = [name for name, _ in faults if name.split("=", 1)[0] not in FAULTS]
        if unknown:
            print(f"spot-policy robot: error: unknown fault(s) {', '.join(unknown)}; faults: {', '.join(FAULTS)}",
                  file=sys.stderr)  # fmt: skip
            return 2

        sys.setswitchinterval(0.0005)  # the emulator's physics thread shares this process
        username, password = "spot-policy", secrets.token_urlsafe(18)
        emulator = SpotEmulator(
            username, password, tls_dir=out / "emulator", expiry=args.on_expiry, on_log=_emulator_log(out)
        ).start()
        freeze_startup_heap()  # the emulator's physics and stream run in this process
        env[ENV_USERNAME], env[ENV_PASSWORD] = username, password
        bridge = {"hostname": "127.0.0.1", "port": emulator.port, "ca_cert": str(emulator.ca_path)}
        target = f"the Spot API emulator on 127.0.0.1:{emulator.port}"
    else:
        bridge = {"hostname": args.hostname, "port": args.port, "ca_cert": args.ca_cert}
        target = f"the robot at {args.hostname}:{args.port}"
    specs = bringup.robot_nodes(args.policy, teleop=False, extra_bridge_params=bridge)
    specs = bringup.recorded(specs, out / "bag", sim_time=False)
    specs += live_session.view_specs(args, accept_cmd_vel=False)
    print(f"spot-policy robot: profile '{profile.name}' ({profile.duration:.1f} s), policy {args.policy}, "
          f"{target}, ROS domain {domain}; run folder {out}")  # fmt: skip
    started = time.monotonic()
    stop_faults = _inject_on_schedule(emulator, faults) if emulator is not None and faults else None
    player, limit = bringup.profile_player(args.profile, sim_time=False, recorded=True), 90.0 + 1.5 * profile.duration
    failure: JobError | None = None
    try:
        run_nodes(specs, player, out, profile, limit, env)
    except JobError as exc:
        failure = exc
    finally:
        if stop_faults is not None:
            stop_faults()
        if emulator is not None:
            emulator.stop()
            print(emulator.summary(), flush=True)
        robot = _robot_account(emulator) if emulator is not None else {}
    if failure is not None:
        print(f"spot-policy robot: error: {failure}", file=sys.stderr)
        if robot:  # what the robot was left doing matters most when the run broke
            print(
                f"robot side: final behaviour {robot['final_behaviour']}, joint control expiries "
                f"{robot['joint_control_expiries']}, falls {robot['falls']}, lease returned: {robot['lease_returned']}"
            )
        return 1
    extra = {
        "mode": "robot (emulator)" if args.emulator else "robot",
        "policy": args.policy,
        "wall_time_s": round(time.monotonic() - started, 2),
        "robot": robot,
    }
    ok = make_report(out, out / "bag", profile, not args.no_video, extra)
    if robot:
        print(f"robot side: lease returned: {robot['lease_returned']}, joint commands {robot['joint_commands']}, "
              f"expired on arrival {robot['joint_commands_expired_on_arrival']}")  # fmt: skip
    print(f"run folder: {out} (summary.json, tracking.png{', video.mp4' if not args.no_video else ''}, bag/, logs/)")
    return 1 if args.strict and not ok else 0


def _robot_account(emulator) -> dict[str, object]:
    """What the emulated robot saw: commands, expiries, state messages, the lease at the end."""
    status = emulator.status()
    events = [what for _, what in emulator.lease_events]
    return {
        "lease_returned": not emulator.lease_owner and any(e.startswith("returned") for e in events),
        "lease_events": events,
        **{k: status[k] for k in ("joint_commands", "joint_commands_expired_on_arrival", "joint_control_expiries")},
        **{
            k: status[k] for k in ("joint_control_resumes", "falls", "stalls", "dropped_steps", "state_samples_skipped")
        },
        **{k: status[k] for k in ("state_messages", "command_streams", "joint_messages")},
        "longest_stall_ms": round(emulator.body.longest_stall_s * 1e3, 1),
        "events": dict(emulator.event_counts),  # console lines by kind (logs/emulator.log)
        "expiry": emulator.expiry.value,
        "final_behaviour": status["behaviour"],
    }


def _emulator_log(out: Path):
    """The emulator's event lines: to logs/emulator.log and to this console, one line each."""
    import threading

    (out / "logs").mkdir(parents=True, exist_ok=True)
    log = (out / "logs" / "emulator.log").open("a", buffering=1)
    lock = threading.Lock()

    def write(line: str) -> None:
        with lock:
            log.write(line + "\n")
        print(f"  {line}", flush=True)

    return write


def _inject_on_schedule(emulator, faults: list[tuple[str, float]]):
    """A thread injecting ``faults`` at their times after the bridge holds the lease; returns its stop."""
    import threading

    stop = threading.Event()

    def run() -> None:
        while not emulator.lease_owner and not stop.wait(0.1):
            pass
        start = time.monotonic()
        for name, at in faults:
            if stop.wait(max(0.0, start + at - time.monotonic())):
                return
            if name.startswith("latency="):
                emulator.inject("latency", float(name.split("=", 1)[1]))
            else:
                emulator.inject(name)
            print(f"  [fault] {name} injected", flush=True)

    thread = threading.Thread(target=run, name="robot_job_faults", daemon=True)
    thread.start()
    return stop.set
