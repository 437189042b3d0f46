"""The run report of a profile run: per-segment tracking, falls, ``summary.json`` and a plot.

Reads a rosbag2 bag (the recorder's or ``ros2 bag``'s) with the ``rosbags`` reader; no rclpy, so
it runs anywhere the bag can be copied to.

Time: simulation time. Odometry is placed by its header stamps (the bridge's sim time; the bag's
receive time only if the stamps are zero). Segments are aligned by the profile player's
``profile/segment`` messages (``std_msgs/String`` JSON ``{"segment", "index", "t"}`` at each
segment start, ``t`` in sim seconds); segments without a marker continue from their predecessor
by the profile's durations. Without any marker the profile starts at the first recorded
``cmd_vel`` (its bag time: the recorder runs with ``use_sim_time``), else at the first odometry.
Times in the report are seconds since the profile started.

Definitions, per segment (also written into ``summary.json``):

- scored window: the segment minus its first ``profile.settle_s`` seconds;
- achieved (vx, vy, wz): the mean over the scored window of the odometry twist (body frame);
- tracking error: ``vxy`` = ‖mean achieved (vx, vy) − commanded (vx, vy)‖ in m/s and
  ``wz`` = |mean achieved wz − commanded wz| in rad/s (a mean-velocity error: gait oscillation
  averages out, drift does not);
- RMS error, for information only: the RMS over the scored window of the instantaneous errors
  ‖(vx, vy)(t) − commanded‖ and |wz(t) − commanded wz|;
- fell: at any odometry sample of the segment the base height (pose z) is below 0.25 m or the
  projected gravity's z is above −0.5 (the base is tilted more than 60°);
- passed (moving segments only): tracking errors within the thresholds and, if required, no fall;
- the run passed: every moving segment passed and, if required, no segment fell except ``stop``
  ones (the policy is off there and the bridge's safe behaviour, possibly limp, holds the robot).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader

from spot_policy.core import contract
from spot_policy.core.profile import END_MARKER, Profile, ProfileError, Segment, load_profile
from spot_policy.ros.bag_recorder import default_typestore, deserialize_cdr

FALL_HEIGHT_M = 0.25
FALL_GRAVITY_Z = -0.5  # projected gravity z above this: tilted more than 60 degrees
MAX_VXY_ERROR = 0.10  # m/s
MAX_WZ_ERROR = 0.15  # rad/s
#: Window edges are half-open [start, end); a sample within this of an edge counts as on it, so
#: nanosecond stamps converted to float seconds (a Unix-epoch time keeps ~0.2 us) land as meant.
TIME_EPS_S = 1e-6
SUMMARY_NAME = "summary.json"
PLOT_NAME = "tracking.png"

TOPIC_ODOM = "odom"
TOPIC_CMD_VEL = "cmd_vel"
TOPIC_SEGMENT = contract.TOPIC_PROFILE_SEGMENT
_TYPES = {
    TOPIC_ODOM: "nav_msgs/msg/Odometry",
    TOPIC_CMD_VEL: "geometry_msgs/msg/Twist",
    TOPIC_SEGMENT: "std_msgs/msg/String",
}

DEFINITIONS = {
    "time": "simulation time in s since the profile's first segment started",
    "scored_window": "the segment minus its first settle_s seconds",
    "achieved": "mean over the scored window of the odometry twist (body frame): vx, vy in m/s, wz in rad/s",
    "tracking_error": (
        "vxy_m_s = norm(mean achieved (vx, vy) - commanded (vx, vy)); "
        "wz_rad_s = abs(mean achieved wz - commanded wz); over the scored window"
    ),
    "rms_error": (
        "for information: RMS over the scored window of norm((vx, vy)(t) - commanded (vx, vy)) "
        "and of abs(wz(t) - commanded wz)"
    ),
    "fell": (
        f"at any odometry sample of the segment: base height (pose z) < {FALL_HEIGHT_M} m, "
        f"or projected gravity z > {FALL_GRAVITY_Z} (tilt > 60 deg)"
    ),
    "passed": "moving segments only: both tracking errors within the thresholds and (if required) no fall",
    "run_passed": (
        "every moving segment passed and (if required) no fall in any segment but stop ones, where the "
        "policy is off and the bridge's safe behaviour (which may be going limp) holds the robot"
    ),
}


class RunReportError(ValueError):
    """A bag that cannot be scored (missing, unreadable, lacking a topic, from another profile)."""


@dataclass(frozen=True)
class Thresholds:
    vxy_m_s: float = MAX_VXY_ERROR
    wz_rad_s: float = MAX_WZ_ERROR
    require_no_fall: bool = True


@dataclass(frozen=True)
class RunData:
    """The time series a report needs, in absolute sim seconds."""

    odom_t: np.ndarray  # (N,)
    position: np.ndarray  # (N, 3) odom frame
    quat_xyzw: np.ndarray  # (N, 4)
    twist: np.ndarray  # (N, 3) vx, vy, wz in the body frame
    cmd_t: np.ndarray  # (M,)
    cmd: np.ndarray  # (M, 3)
    markers: tuple[tuple[int, str, float], ...]  # (index, segment name, t) from profile/segment
    odom_time_source: str  # "header" or "bag"

    @property
    def gravity_z(self) -> np.ndarray:
        """z of gravity (0, 0, -1) projected into the body frame: -R[2, 2] of the base orientation."""
        q = self.quat_xyzw / np.linalg.norm(self.quat_xyzw, axis=1, keepdims=True)
        return -(1.0 - 2.0 * (q[:, 0] ** 2 + q[:, 1] ** 2))


@dataclass(frozen=True)
class SegmentResult:
    name: str
    index: int
    mode: str
    moving: bool
    start_s: float
    end_s: float
    scored_from_s: float
    commanded: tuple[float, float, float]
    samples: int  # odometry samples in the scored window
    achieved: tuple[float, float, float] | None
    cmd_vel_recorded: tuple[float, float, float] | None  # mean recorded cmd_vel in the scored window
    error_vxy_m_s: float | None
    error_wz_rad_s: float | None
    rms_vxy_m_s: float | None
    rms_wz_rad_s: float | None
    fell: bool
    fell_at_s: float | None
    min_base_height_m: float | None
    passed: bool | None

    def to_dict(self) -> dict[str, object]:
        def vec(v: tuple[float, float, float] | None) -> dict[str, float] | None:
            return None if v is None else {"vx": v[0], "vy": v[1], "wz": v[2]}

        return {
            "name": self.name,
            "index": self.index,
            "mode": self.mode,
            "moving": self.moving,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "scored_from_s": self.scored_from_s,
            "samples": self.samples,
            "commanded": vec(self.commanded),
            "achieved": vec(self.achieved),
            "cmd_vel_recorded": vec(self.cmd_vel_recorded),
            "tracking_error": {"vxy_m_s": self.error_vxy_m_s, "wz_rad_s": self.error_wz_rad_s},
            "rms_error": {"vxy_m_s": self.rms_vxy_m_s, "wz_rad_s": self.rms_wz_rad_s},
            "fell": self.fell,
            "fell_at_s": self.fell_at_s,
            "min_base_height_m": self.min_base_height_m,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class RunReport:
    bag: str
    profile: Profile
    thresholds: Thresholds
    alignment: str  # "profile/segment", "cmd_vel" or "odom"
    t0: float  # absolute sim time of the profile start
    segments: tuple[SegmentResult, ...]
    data: RunData = field(repr=False)
    notes: tuple[str, ...] = ()

    @property
    def fell(self) -> bool:
        return any(s.fell for s in self.segments)

    @property
    def min_base_height_m(self) -> float | None:
        heights = [s.min_base_height_m for s in self.segments if s.min_base_height_m is not None]
        return min(heights) if heights else None

    @property
    def passed(self) -> bool:
        """Every moving segment passed and (if required) no fall outside ``stop`` segments."""
        if self.thresholds.require_no_fall and any(s.fell for s in self.segments if s.mode != "stop"):
            return False
        return all(s.passed for s in self.segments if s.moving)

    def to_dict(self) -> dict[str, object]:
        return {
            "bag": self.bag,
            "profile": self.profile.name,
            "profile_source": self.profile.source,
            "settle_s": self.profile.settle_s,
            "alignment": self.alignment,
            "odom_time_source": self.data.odom_time_source,
            "profile_start_sim_time_s": self.t0,
            "thresholds": {
                "tracking_error_vxy_m_s": self.thresholds.vxy_m_s,
                "tracking_error_wz_rad_s": self.thresholds.wz_rad_s,
                "require_no_fall": self.thresholds.require_no_fall,
                "fall_height_m": FALL_HEIGHT_M,
                "fall_gravity_z": FALL_GRAVITY_Z,
            },
            "definitions": DEFINITIONS,
            "passed": self.passed,
            "fell": self.fell,
            "min_base_height_m": self.min_base_height_m,
            "segments": [s.to_dict() for s in self.segments],
            "notes": list(self.notes),
        }


# --- reading ----------------------------------------------------------------------------------


def _find_connection(connections: Sequence[Connection], name: str) -> Connection | None:
    """The connection of topic ``name``: ``/name`` exactly, else the one ``…/name`` (any namespace)."""
    exact = [c for c in connections if c.topic in (name, f"/{name}")]
    if exact:
        return exact[0]
    suffixed = [c for c in connections if c.topic.endswith(f"/{name}")]
    if len(suffixed) > 1:
        found = ", ".join(sorted({c.topic for c in suffixed}))
        raise RunReportError(f"topic {name} is ambiguous in the bag ({found}); fix: record one namespace per bag")
    return suffixed[0] if suffixed else None


def _stamp_s(stamp: object) -> float:
    return stamp.sec + stamp.nanosec * 1e-9  # type: ignore[attr-defined]


def read_run(bag: str | Path) -> RunData:
    """Odometry, cmd_vel and segment markers from ``bag`` (a rosbag2 folder or an .mcap file)."""
    bag = Path(bag)
    if not bag.exists():
        raise RunReportError(f"{bag}: no such bag; fix: give the run's bag folder")
    typestore = default_typestore()
    try:
        with Reader(bag) as reader:
            connections = list(reader.connections)
            found: dict[str, Connection] = {}
            for name, msgtype in _TYPES.items():
                conn = _find_connection(connections, name)
                if conn is None:
                    continue
                if conn.msgtype != msgtype:
                    raise RunReportError(
                        f"{bag}: topic {conn.topic} has type {conn.msgtype}, expected {msgtype}; "
                        "fix: record the contract's types"
                    )
                found[name] = conn
            if TOPIC_ODOM not in found:
                have = ", ".join(sorted(c.topic for c in connections)) or "no topics"
                raise RunReportError(
                    f"{bag}: has no {TOPIC_ODOM} topic ({_TYPES[TOPIC_ODOM]}), which the report scores "
                    f"(it has: {have}); fix: record odom"
                )
            by_id = {c.id: name for name, c in found.items()}
            odom_rows: list[tuple[float, float, tuple[float, ...]]] = []
            cmd_rows: list[tuple[float, float, float, float]] = []
            markers: list[tuple[int, str, float]] = []
            for conn, timestamp, raw in reader.messages(connections=list(found.values())):
                name = by_id[conn.id]
                msg = deserialize_cdr(typestore, raw, conn.msgtype)
                t_bag = timestamp * 1e-9
                if name == TOPIC_ODOM:
                    p, q = msg.pose.pose.position, msg.pose.pose.orientation
                    lin, ang = msg.twist.twist.linear, msg.twist.twist.angular
                    row = (p.x, p.y, p.z, q.x, q.y, q.z, q.w, lin.x, lin.y, ang.z)
                    odom_rows.append((_stamp_s(msg.header.stamp), t_bag, row))
                elif name == TOPIC_CMD_VEL:
                    cmd_rows.append((t_bag, msg.linear.x, msg.linear.y, msg.angular.z))
                else:
                    markers.append(_parse_marker(msg.data, bag))
    except RunReportError:
        raise
    except Exception as exc:  # rosbags raises many kinds for a damaged bag; say which bag, once
        raise RunReportError(f"{bag}: cannot read the bag ({type(exc).__name__}: {exc}); fix: re-record it") from exc
    if not odom_rows:
        raise RunReportError(f"{bag}: topic {found[TOPIC_ODOM].topic} has no messages; fix: record a run")
    header_t = np.array([r[0] for r in odom_rows])
    use_header = bool(np.all(header_t > 0.0))
    odom_t = header_t if use_header else np.array([r[1] for r in odom_rows])
    values = np.array([r[2] for r in odom_rows], dtype=np.float64)
    order = np.argsort(odom_t, kind="stable")
    cmd = np.array(cmd_rows, dtype=np.float64).reshape(-1, 4)
    return RunData(
        odom_t=odom_t[order],
        position=values[order, 0:3],
        quat_xyzw=values[order, 3:7],
        twist=values[order, 7:10],
        cmd_t=cmd[:, 0],
        cmd=cmd[:, 1:4],
        markers=tuple(markers),
        odom_time_source="header" if use_header else "bag",
    )


def _parse_marker(text: str, bag: Path) -> tuple[int, str, float]:
    try:
        data = json.loads(text)
        return int(data["index"]), str(data["segment"]), float(data["t"])
    except (ValueError, KeyError, TypeError):
        raise RunReportError(f"{bag}: a {TOPIC_SEGMENT} message is not JSON with segment, index, t: {text!r}") from None


# --- scoring ----------------------------------------------------------------------------------


def segment_starts(profile: Profile, data: RunData) -> tuple[np.ndarray, np.ndarray, str]:
    """Absolute (start, end) sim times of every segment, and what aligned them."""
    segments = profile.segments
    n = len(segments)
    starts = np.full(n, np.nan)
    marks: dict[int, float] = {}
    for index, name, t in data.markers:
        if index == n and name == END_MARKER:
            continue  # the player's "profile done" marker
        if not 0 <= index < n or segments[index].name != name:
            raise RunReportError(
                f"the bag's segment marker {index} {name!r} is not in profile {profile.name!r} "
                f"({', '.join(s.name for s in segments)}); fix: score the bag with the profile it ran"
            )
        marks.setdefault(index, t)  # a re-sent marker does not move the start
    if marks:
        alignment = TOPIC_SEGMENT
        first = min(marks)
        for i in range(first + 1):  # segments before the first marker: back from it by the profile
            starts[i] = marks[first] - (segments[first].start - segments[i].start)
        for i in range(first + 1, n):
            starts[i] = marks.get(i, starts[i - 1] + segments[i - 1].duration)
    else:
        if data.cmd_t.size:
            alignment, t0 = TOPIC_CMD_VEL, float(data.cmd_t.min())
        else:
            alignment, t0 = TOPIC_ODOM, float(data.odom_t[0])
        starts = np.array([t0 + s.start for s in segments])
    ends = np.append(starts[1:], starts[-1] + segments[-1].duration)
    return starts, ends, alignment


def _score_segment(
    i: int, seg: Segment, start: float, end: float, t0: float, settle: float, data: RunData, thr: Thresholds
) -> SegmentResult:
    t = data.odom_t
    lo, hi = start - TIME_EPS_S, end - TIME_EPS_S
    in_segment = (t >= lo) & (t < hi)
    scored = (t >= lo + settle) & (t < hi)
    cmd = np.array(seg.cmd_vel, dtype=np.float64)

    samples = int(scored.sum())
    achieved = err_vxy = err_wz = rms_vxy = rms_wz = None
    if samples:
        twist = data.twist[scored]
        mean = twist.mean(axis=0)
        achieved = (float(mean[0]), float(mean[1]), float(mean[2]))
        err_vxy = float(np.hypot(mean[0] - cmd[0], mean[1] - cmd[1]))
        err_wz = float(abs(mean[2] - cmd[2]))
        rms_vxy = float(np.sqrt(np.mean(np.sum((twist[:, :2] - cmd[:2]) ** 2, axis=1))))
        rms_wz = float(np.sqrt(np.mean((twist[:, 2] - cmd[2]) ** 2)))

    cmd_window = (data.cmd_t >= lo + settle) & (data.cmd_t < hi)
    recorded = None
    if cmd_window.any():
        m = data.cmd[cmd_window].mean(axis=0)
        recorded = (float(m[0]), float(m[1]), float(m[2]))

    height = data.position[in_segment, 2]
    fallen = (height < FALL_HEIGHT_M) | (data.gravity_z[in_segment] > FALL_GRAVITY_Z)
    fell = bool(fallen.any())
    fell_at = float(t[in_segment][np.argmax(fallen)] - t0) if fell else None

    passed: bool | None = None
    if seg.moving:
        passed = (
            err_vxy is not None
            and err_wz is not None
            and err_vxy <= thr.vxy_m_s
            and err_wz <= thr.wz_rad_s
            and not (thr.require_no_fall and fell)
        )
    return SegmentResult(
        name=seg.name,
        index=i,
        mode=seg.mode,
        moving=seg.moving,
        start_s=float(start - t0),
        end_s=float(end - t0),
        scored_from_s=float(start + settle - t0),
        commanded=seg.cmd_vel,
        samples=samples,
        achieved=achieved,
        cmd_vel_recorded=recorded,
        error_vxy_m_s=err_vxy,
        error_wz_rad_s=err_wz,
        rms_vxy_m_s=rms_vxy,
        rms_wz_rad_s=rms_wz,
        fell=fell,
        fell_at_s=fell_at,
        min_base_height_m=float(height.min()) if height.size else None,
        passed=passed,
    )


def build_report(
    bag: str | Path,
    profile: Profile,
    *,
    max_vxy_error: float = MAX_VXY_ERROR,
    max_wz_error: float = MAX_WZ_ERROR,
    require_no_fall: bool = True,
) -> RunReport:
    """Score a recorded run of ``profile`` (see the module docstring for every definition)."""
    data = read_run(bag)
    thresholds = Thresholds(max_vxy_error, max_wz_error, require_no_fall)
    starts, ends, alignment = segment_starts(profile, data)
    t0 = float(starts[0])
    results = tuple(
        _score_segment(i, seg, float(starts[i]), float(ends[i]), t0, profile.settle_s, data, thresholds)
        for i, seg in enumerate(profile.segments)
    )
    notes: list[str] = []
    if alignment != TOPIC_SEGMENT:
        notes.append(f"no {TOPIC_SEGMENT} messages: segments aligned to the first {alignment} message")
    if data.odom_time_source != "header":
        notes.append("odometry header stamps are zero: odometry placed by bag receive time")
    empty = [r.name for r in results if r.moving and r.samples == 0]
    if empty:
        notes.append(f"no odometry in the scored window of: {', '.join(empty)}")
    return RunReport(str(bag), profile, thresholds, alignment, t0, results, data, tuple(notes))


# --- output -----------------------------------------------------------------------------------


def write_summary(report: RunReport, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
    return path


def plot_report(report: RunReport, path: str | Path) -> Path:
    """Commanded vs achieved vx, vy, wz and base height over sim time, segments shaded (PNG)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, no display needed

    path = Path(path)
    data, t0 = report.data, report.t0
    t = data.odom_t - t0
    fig = Figure(figsize=(11, 9), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True)
    step_t = [x for s in report.segments for x in (s.start_s, s.end_s)]
    labels = (("vx", "m/s"), ("vy", "m/s"), ("wz", "rad/s"))
    for k, (ax, (name, unit)) in enumerate(zip(axes[:3], labels, strict=True)):
        step_v = [s.commanded[k] for s in report.segments for _ in range(2)]
        ax.plot(t, data.twist[:, k], color="tab:blue", lw=0.8, label="achieved (odom)")
        if data.cmd_t.size:
            ax.plot(data.cmd_t - t0, data.cmd[:, k], color="tab:orange", lw=0.8, ls=":", label="cmd_vel (recorded)")
        ax.plot(step_t, step_v, color="black", lw=1.5, label="commanded (profile)")
        ax.set_ylabel(f"{name} [{unit}]")
    axes[3].plot(t, data.position[:, 2], color="tab:green", lw=0.9, label="base height (odom z)")
    axes[3].axhline(FALL_HEIGHT_M, color="tab:red", ls="--", lw=1, label="fall threshold")
    axes[3].set_ylabel("height [m]")
    axes[3].set_xlabel("sim time since profile start [s]")
    for ax in axes:
        for s in report.segments:
            ax.axvspan(s.start_s, s.end_s, color="0.85" if s.index % 2 else "0.93", zorder=0)
            if s.moving:
                ax.axvspan(s.start_s, s.scored_from_s, fill=False, hatch="//", edgecolor="0.7", lw=0, zorder=0)
            if s.fell_at_s is not None:
                ax.axvline(s.fell_at_s, color="tab:red", lw=0.8, ls=":")
        ax.grid(True, lw=0.3)
        ax.legend(loc="upper right", fontsize=7)
    for s in report.segments:
        mark = "" if s.passed is None else (" ✓" if s.passed else " ✗")
        axes[0].text(
            (s.start_s + s.end_s) / 2, 1.02, s.name + mark, transform=axes[0].get_xaxis_transform(), ha="center"
        )
    verdict = "passed" if report.passed else "FAILED"
    fig.suptitle(f"{report.profile.name}: {verdict} (hatched: settle time, not scored; red dotted: a fall)")
    fig.savefig(path, dpi=100)
    return path


def write_run_report(
    bag: str | Path,
    profile: Profile,
    out_dir: str | Path,
    *,
    max_vxy_error: float = MAX_VXY_ERROR,
    max_wz_error: float = MAX_WZ_ERROR,
    require_no_fall: bool = True,
) -> RunReport:
    """Build the report and write ``summary.json`` and ``tracking.png`` into ``out_dir``."""
    report = build_report(
        bag, profile, max_vxy_error=max_vxy_error, max_wz_error=max_wz_error, require_no_fall=require_no_fall
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_summary(report, out / SUMMARY_NAME)
    plot_report(report, out / PLOT_NAME)
    return report


def format_table(report: RunReport) -> str:
    """One line per segment, for a terminal."""

    def num(v: float | None) -> str:
        return "   -  " if v is None or math.isnan(v) else f"{v:6.3f}"

    lines = [f"{'segment':<12} {'cmd vx vy wz':>20} {'achieved vx vy wz':>22} {'err vxy':>8} {'err wz':>7}  fell"]
    for s in report.segments:
        ach = s.achieved or (None, None, None)
        verdict = "" if s.passed is None else ("  ok" if s.passed else "  FAIL")
        lines.append(
            f"{s.name:<12} {' '.join(f'{v:6.2f}' for v in s.commanded):>20} {' '.join(num(v) for v in ach):>22} "
            f"{num(s.error_vxy_m_s):>8} {num(s.error_wz_rad_s):>7}  {'yes' if s.fell else 'no'}{verdict}"
        )
    lines.append(f"{'passed' if report.passed else 'FAILED'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spot_policy_tools.run_report BAG --profile P --out DIR``: exit 0 passed, 1 failed, 2 error."""
    from spot_policy.core.paths import config_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bag")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-vxy-error", type=float, default=MAX_VXY_ERROR)
    parser.add_argument("--max-wz-error", type=float, default=MAX_WZ_ERROR)
    args = parser.parse_args(argv)
    try:
        profile = load_profile(args.profile, config_dir() / "profiles")
        report = write_run_report(
            args.bag, profile, args.out, max_vxy_error=args.max_vxy_error, max_wz_error=args.max_wz_error
        )
    except (RunReportError, ProfileError) as exc:
        print(f"run_report: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
