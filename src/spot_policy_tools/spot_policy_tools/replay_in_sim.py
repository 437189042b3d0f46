"""``spot-policy replay BAG --in-sim``: the log's commands played into the MuJoCo sim, and where they part.

The question users of every peer project ask: "it worked in sim, why not on the robot?". This takes
a recording (a robot log, or any run the policy node recorded), starts the sim bridge at the logged
robot's first pose, replays the logged mode switches and cmd_vel (from the policy node's own record,
so exactly what the node had) into the same policy through the same nodes, and compares
logged with simulated base velocity, base height, joint positions and joint targets over time since
the first ~/stand or ~/walk: ``in_sim.json`` (RMS and max difference per signal) and ``in_sim.png``.
The sim run's own folder (bag, summary, logs) is kept under ``sim/``.

The sim runs in real time, as the robot did: the mode switches and commands then reach the sim's
node within milliseconds of their logged times. (In lockstep the simulation runs many times faster
than a service call or a profile tick gets through the ROS graph, so a command would land tenths
of a simulated second late and the comparison would measure that instead.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml

from spot_policy.core import contract, paths
from spot_policy.core.profile import load_profile
from spot_policy.ros import bringup
from spot_policy.ros import debug_stream as debug
from spot_policy_tools.replay import Recording, ReplayError, read_recording, recorded_policy
from spot_policy_tools.run_report import read_run

REPORT_NAME = "in_sim.json"
PLOT_NAME = "in_sim.png"
PROFILE_NAME = "in_sim_profile.yaml"
#: The node's mode after each event -> the profile mode that asks for it (a fault cannot be asked
#: for: the sim node keeps publishing nothing, like after ~/stop).
PROFILE_MODE = {"stand": "stand", "walk": "walk", "idle": "stop", "fault": "stop"}


@dataclass(frozen=True)
class LogTimeline:
    """What the logged node was asked to do, on its clock relative to the first stand/walk."""

    t0_ns: int
    times: np.ndarray  # (K,) s since t0, one per step record and event
    modes: tuple[str, ...]  # the node's mode after each
    commands: np.ndarray  # (K, 3) the cmd_vel it used (zero when it had timed out)


def log_timeline(rec: Recording) -> LogTimeline:
    """The node's mode and the cmd_vel it had at each of its records, from the first accepted request."""
    start = rec.start or {}
    timeout_s = float((start.get("config") or {}).get("cmd_vel_timeout_s", 0.5))
    first = next(
        (p for p in rec.points if p.kind == "request" and p.event and p.event.get("accepted")),
        None,
    )
    if first is None:
        raise ReplayError(f"{rec.bag}: the node was never asked to stand or walk; nothing to replay in sim")
    mode = "idle"
    times, modes, commands = [], [], []
    for point in rec.points:
        if point.kind != "step" and point.event:
            mode = str(point.event.get("mode", mode))
        if point.t_ns < first.t_ns:
            continue
        entry = point.view.get("cmd_vel", [])
        cmd = debug.command_of(entry) if entry and entry[0] > 0 else None
        fresh = cmd is not None and (point.t_ns - int(entry[1])) * 1e-9 <= timeout_s
        times.append((point.t_ns - first.t_ns) * 1e-9)
        modes.append(mode)
        commands.append(cmd if fresh else (0.0, 0.0, 0.0))
    return LogTimeline(first.t_ns, np.array(times), tuple(modes), np.array(commands, dtype=np.float64))


def profile_from_log(timeline: LogTimeline, control_dt: float) -> dict:
    """A command profile (config/profiles format) that asks the sim for what the log's node had.

    Segments change where the mode or the command changed, on the control period's grid (the
    player runs at the control rate, so no segment is shorter than one of its ticks).
    """
    segments: list[dict] = []
    end = float(timeline.times[-1]) + control_dt
    for t, mode, cmd in zip(timeline.times, timeline.modes, timeline.commands, strict=True):
        start = round(round(float(t) / control_dt) * control_dt, 6)
        key = (PROFILE_MODE.get(mode, "stop"), [round(float(v), 4) for v in cmd])
        if segments and (segments[-1]["mode"], segments[-1]["cmd_vel"]) == key:
            continue
        if segments and start <= segments[-1]["start"]:
            segments[-1].update(mode=key[0], cmd_vel=key[1])  # two changes within one period: the later wins
            continue
        segments.append({"start": start, "mode": key[0], "cmd_vel": key[1]})
    if segments[0]["mode"] == "stop":
        raise ReplayError("the log's first accepted request left the node idle; nothing to replay in sim")
    out = []
    for i, s in enumerate(segments):
        stop = segments[i + 1]["start"] if i + 1 < len(segments) else round(end, 6)
        segment = {"name": f"log{i}", "mode": s["mode"], "duration": round(stop - s["start"], 6)}
        if s["mode"] == "walk":
            segment["cmd_vel"] = s["cmd_vel"]
        out.append(segment)
    return {"name": "in_sim", "settle_s": 0.0, "segments": out}


def initial_pose(rec: Recording, t0_ns: int) -> str:
    """The sim bridge's ``initial_pose``: the last logged joint_states at or before the first request
    (the robot's pose when the policy node took over); the first one if none is that early."""
    msgs = rec.inputs["joint_states"]
    if not msgs:
        raise ReplayError(f"{rec.bag}: no joint_states in the bag; fix: record every contract topic")
    before = [m for m in msgs if m.t_ns <= t0_ns] or msgs[:1]
    names, positions = before[-1].values[0], before[-1].values[1]
    pose = {}
    for name, value in zip(names, positions, strict=False):
        joint = contract.canonical_joint_name(name)
        if joint is not None:
            pose[joint] = float(value)
    return ",".join(f"{j}={pose[j]:.6f}" for j in contract.ISAAC_JOINT_ORDER if j in pose)


@dataclass
class Series:
    """One run's signals on its own time axis (s since its first stand/walk)."""

    base_t: np.ndarray
    base: np.ndarray  # (N, 4): vx, vy (m/s, body), wz (rad/s), height (m, odom z)
    joints_t: np.ndarray
    joints: np.ndarray  # (M, 12) Isaac order
    targets_t: np.ndarray
    targets: np.ndarray  # (L, 12) Isaac order


def _in_isaac_order(names: tuple[str, ...], values: np.ndarray) -> np.ndarray:
    where = {contract.canonical_joint_name(n): i for i, n in enumerate(names)}
    return np.array([values[where[j]] if j in where else np.nan for j in contract.ISAAC_JOINT_ORDER])


def series(rec: Recording, bag: Path, t0_ns: int) -> Series:
    data = read_run(bag)
    t0 = t0_ns * 1e-9
    joints = rec.inputs["joint_states"]
    return Series(
        base_t=data.odom_t - t0,
        base=np.column_stack([data.twist, data.position[:, 2]]),
        joints_t=np.array([m.stamp_ns * 1e-9 - t0 for m in joints]),
        joints=np.array([_in_isaac_order(m.values[0], m.values[1]) for m in joints]).reshape(-1, 12),
        targets_t=np.array([c.stamp_ns * 1e-9 - t0 for c in rec.commands]),
        targets=np.array([_in_isaac_order(c.names, c.positions) for c in rec.commands]).reshape(-1, 12),
    )


@dataclass
class Comparison:
    log: str
    sim_run: str
    policy: str
    initial_pose: str
    window_s: tuple[float, float]
    rms: dict[str, float] = field(default_factory=dict)
    max_abs: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


BASE_SIGNALS = ("vx", "vy", "wz", "height")


def compare(log: Series, sim: Series, comparison: Comparison) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Sim interpolated onto the log's times, over the window both cover; fills the RMS/max tables.

    Returns ``signal -> (t, logged, simulated)`` for the plot.
    """
    lo = max(0.0, log.base_t[0], sim.base_t[0])
    hi = min(log.base_t[-1], sim.base_t[-1])
    comparison.window_s = (round(lo, 3), round(hi, 3))
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def add(name: str, t_log: np.ndarray, v_log: np.ndarray, t_sim: np.ndarray, v_sim: np.ndarray) -> None:
        keep = (t_log >= lo) & (t_log <= hi) & np.isfinite(v_log)
        if keep.sum() < 2 or len(t_sim) < 2:
            comparison.notes.append(f"{name}: not enough samples in the common window")
            return
        t = t_log[keep]
        simulated = np.interp(t, t_sim, v_sim)
        diff = simulated - v_log[keep]
        comparison.rms[name] = round(float(np.sqrt(np.mean(diff**2))), 6)
        comparison.max_abs[name] = round(float(np.max(np.abs(diff))), 6)
        curves[name] = (t, v_log[keep], simulated)

    for i, name in enumerate(BASE_SIGNALS):
        add(name, log.base_t, log.base[:, i], sim.base_t, sim.base[:, i])
    for group, (t_log, v_log, t_sim, v_sim) in {
        "joint_pos": (log.joints_t, log.joints, sim.joints_t, sim.joints),
        "joint_target": (log.targets_t, log.targets, sim.targets_t, sim.targets),
    }.items():
        for j, joint in enumerate(contract.ISAAC_JOINT_ORDER):
            add(f"{group}.{joint}", t_log, v_log[:, j], t_sim, v_sim[:, j])
        keys = [k for k in comparison.rms if k.startswith(group + ".")]
        if keys:
            comparison.rms[group] = round(float(np.sqrt(np.mean(np.square([comparison.rms[k] for k in keys])))), 6)
            comparison.max_abs[group] = max(comparison.max_abs[k] for k in keys)
    return curves


def write_plot(
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], comparison: Comparison, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [*BASE_SIGNALS, *(f"joint_pos.{j}" for j in ("fl_hy", "fl_kn", "hr_kn"))]
    shown += [f"joint_target.{j}" for j in ("fl_hy", "fl_kn", "hr_kn")]
    shown = [name for name in shown if name in curves]
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 1.9 * len(shown)), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], shown, strict=True):
        t, logged, simulated = curves[name]
        ax.plot(t, logged, label="log", lw=1.2)
        ax.plot(t, simulated, label="sim", lw=1.2)
        ax.set_ylabel(name, fontsize=8)
        ax.set_title(f"RMS difference {comparison.rms.get(name, float('nan')):.4f}", fontsize=8, loc="right")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("s since the first ~/stand or ~/walk")
    fig.suptitle(f"log vs MuJoCo: {Path(comparison.log).name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_in_sim(args: argparse.Namespace) -> int:
    """0: compared (the report says how far apart); 2: bad input or the sim run failed."""
    from spot_policy.core.loader import load_policy
    from spot_policy.ros.dds_isolation import claim_domain
    from spot_policy_tools.sim_job import JOB_STATE_READERS, JobError, default_out, make_report, run_nodes

    rec = read_recording(args.bag)
    if args.policy is None:
        loaded = recorded_policy(rec)
    else:
        loaded = load_policy(args.policy, providers=["cpu"], policies_dir=paths.config_dir() / "policies", log=print)
    policy = str(loaded.spec.run_dir)
    timeline = log_timeline(rec)
    out = (args.out or default_out("in-sim")).resolve()
    sim_out = out / "sim"
    if sim_out.exists() and any(sim_out.iterdir()):
        raise ReplayError(f"{sim_out} is not empty; fix: choose another --out")
    sim_out.mkdir(parents=True, exist_ok=True)
    profile_path = out / PROFILE_NAME
    profile_path.write_text(yaml.safe_dump(profile_from_log(timeline, loaded.spec.control_dt), sort_keys=False))
    profile = load_profile(str(profile_path), paths.config_dir() / "profiles")
    pose = initial_pose(rec, timeline.t0_ns)
    domain = claim_domain()
    print(
        f"spot-policy replay --in-sim: {len(profile.segments)} segments ({profile.duration:.1f} s) from the log, "
        f"policy {policy}, real time, ROS domain {domain}; folder {out}"
    )
    specs = bringup.sim_nodes(
        policy,
        realtime=True,
        teleop=False,
        extra_bridge_params={"initial_pose": pose, "start_after_readers": JOB_STATE_READERS},
    )
    specs = bringup.recorded(specs, sim_out / "bag")
    player = bringup.profile_player(str(profile_path), recorded=True)
    player = replace(player, overrides={**player.overrides, "cmd_rate_hz": 1.0 / loaded.spec.control_dt})
    started = time.monotonic()
    try:
        run_nodes(specs, player, sim_out, profile, 90.0 + 1.5 * profile.duration)
    except JobError as exc:
        print(f"spot-policy replay --in-sim: error: the sim run failed: {exc}", file=sys.stderr)
        return 2
    make_report(sim_out, sim_out / "bag", profile, video=False, extra={"mode": "realtime", "policy": policy})
    sim_rec = read_recording(sim_out / "bag")
    comparison = Comparison(str(rec.bag), str(sim_out), policy, pose, (0.0, 0.0))
    curves = compare(
        series(rec, rec.bag, timeline.t0_ns), series(sim_rec, sim_out / "bag", log_timeline(sim_rec).t0_ns), comparison
    )
    report = {**asdict(comparison), "wall_time_s": round(time.monotonic() - started, 1)}
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2))
    write_plot(curves, comparison, out / PLOT_NAME)
    print(format_comparison(comparison))
    print(f"wrote {out / REPORT_NAME} and {out / PLOT_NAME} (the sim run: {sim_out})")
    return 0


def main(args: argparse.Namespace) -> int:
    """``spot-policy replay BAG --in-sim``: 0 compared, 2 bad input or a failed sim run."""
    try:
        return run_in_sim(args)
    except ReplayError as exc:
        print(f"spot-policy replay --in-sim: error: {exc}", file=sys.stderr)
        return 2


def format_comparison(c: Comparison) -> str:
    lines = [f"log vs sim over {c.window_s[0]:.2f}..{c.window_s[1]:.2f} s since the first stand/walk"]
    lines.append(f"{'signal':<24} {'RMS':>10} {'max':>10}")
    for name in (*BASE_SIGNALS, "joint_pos", "joint_target"):
        if name in c.rms:
            lines.append(f"{name:<24} {c.rms[name]:>10.4f} {c.max_abs.get(name, float('nan')):>10.4f}")
    lines += [f"note: {n}" for n in c.notes]
    return "\n".join(lines)
