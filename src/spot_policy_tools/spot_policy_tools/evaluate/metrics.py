"""What one trial measured: every metric and its definition, in one place.

Inputs are the trial's recorded time series (the bridge's ground truth, not the sensors' view, so
injected noise never flatters or penalizes the score); outputs are plain numbers. Times are sim
seconds since the trial started (the policy's first stand step is t = 0). ``DEFINITIONS`` is
written into every results.json and printed in docs/EVALUATION.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spot_policy_tools.evaluate.scenario import CommandSegment

FALL_HEIGHT_M = 0.25  # base this close to the ground: fallen (as the run report)
FALL_GRAVITY_Z = -0.5  # projected gravity z above this: tilted more than 60 degrees
SETTLE_S = 1.0  # each walk segment is scored after its first second (the gait settles)
FOOT_RADIUS_M = 0.036
CONTACT_GAP_M = 0.01  # a foot within 1 cm of the ground counts as in contact
MOVING_SPEED_M_S = 0.1  # cost of transport only where the robot moved at least this fast on average

DEFINITIONS: dict[str, str] = {
    "time": "sim seconds since the trial began (the policy's first stand step); commands start after "
    "the scenario's initial stand_s + settle_s",
    "ground_truth": "every metric reads the simulator's exact state (sim_bridge ~/ground_truth), never the "
    "sensors' view the policy got",
    "fell": f"base height above the ground below {FALL_HEIGHT_M} m, or tilt above 60 deg (projected gravity "
    f"z > {FALL_GRAVITY_Z}), at any instant; time_to_fall_s is the first such instant",
    "survived": "the trial did not fall",
    "tracking": f"per walk segment, over the segment minus its first {SETTLE_S:g} s and up to a fall: "
    "vxy error = |mean achieved (vx, vy) - commanded| (body frame, m/s), wz error = |mean achieved wz - "
    "commanded| (rad/s); tracking_*_mean is the mean over segments, tracking_*_worst the largest, "
    "tracking_*_rms the RMS of the instantaneous errors over all scored samples",
    "base_height_min_m": "lowest base height above the ground under it (terrain-aware)",
    "tilt_max_deg": "largest angle between the body's z axis and the vertical",
    "foot_slip_m_s": f"mean horizontal speed of feet in contact (foot sphere within {CONTACT_GAP_M * 100:g} cm "
    "of the ground at two consecutive instants)",
    "torque": "torque_peak_nm: largest |joint torque| applied; torque_rms_nm: RMS over joints and instants",
    "power_mean_w": "mean over instants of sum over joints of |torque * joint velocity| (mechanical, both signs)",
    "cost_of_transport": f"power_mean_w / (total mass * g * mean horizontal speed); only when the mean speed "
    f">= {MOVING_SPEED_M_S} m/s",
    "action_rate": "smoothness: mean over consecutive control steps of the walk segments (up to a fall) and "
    "joints of |a_k - a_(k-1)|, the raw policy output's change, from the targets the bridge applied "
    "(|target change| / action scale)",
    "joint_limit_clips": "joint_command targets (instants x joints) on a joint limit: the node clipped them",
    "command_clips": "control steps whose commanded velocity lay outside the policy's trained ranges (the node "
    "clips it to them)",
    "safety_trips": "faults the policy node latched (stale input, NaN, ...)",
    "fault_detect_s": "safety scenarios: policy node fault time minus the injection time",
    "safe_state_s": "safety scenarios: time the bridge entered its safe behaviour (hold/limp) minus the injection time",
    "distance_m": "horizontal distance between the base's first and last position",
    "push_survived_m_s": "push scenarios: the largest push speed (m/s, world frame) after which the robot was "
    "still up 1 s later (pushes come in increasing order)",
}


@dataclass
class TrialData:
    """A trial's recorded series, in arrays (the bag reader fills it)."""

    t: np.ndarray  # (N,) ground-truth instants, sim s since the trial began
    pos: np.ndarray  # (N, 3) world
    quat_xyzw: np.ndarray  # (N, 4)
    lin_vel_body: np.ndarray  # (N, 3)
    ang_vel_body: np.ndarray  # (N, 3)
    q: np.ndarray  # (N, 12) Isaac order, true
    dq: np.ndarray  # (N, 12)
    tau: np.ndarray  # (N, 12) applied
    ground_under_base: np.ndarray  # (N,) terrain height under the base
    feet: np.ndarray | None  # (N, 4, 3) foot sphere centres, world
    ground_under_feet: np.ndarray | None  # (N, 4)
    targets: np.ndarray  # (N, 12) joint targets in force at each instant (NaN before the first command)
    policy_events: list[dict[str, Any]] = field(default_factory=list)
    bridge_events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TrialContext:
    """What the scenario and the policy say about a trial (no recording needed)."""

    segments: Sequence[CommandSegment]  # times since the commands began
    lead_s: float  # commands begin at this trial time
    total_mass_kg: float
    joint_lower: np.ndarray
    joint_upper: np.ndarray
    ranges: Mapping[str, tuple[float, float]]
    control_dt: float
    action_scale: np.ndarray | float = 0.2  # the policy's action scale (env.yaml), Isaac order
    fault_at_s: float | None = None  # trial time of an injected fault


def _tilt_cos(quat_xyzw: np.ndarray) -> np.ndarray:
    """cos of the angle between the body z axis and the vertical: R[2, 2]."""
    q = quat_xyzw / np.linalg.norm(quat_xyzw, axis=1, keepdims=True)
    return 1.0 - 2.0 * (q[:, 0] ** 2 + q[:, 1] ** 2)


def _num(x: float | None, digits: int = 6) -> float | None:
    """Rounded to a fixed precision: results.json compares equal across machines and worker counts."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def segment_scores(data: TrialData, ctx: TrialContext, fall_t: float | None) -> list[dict[str, Any]]:
    """Per walk segment: commanded, achieved and the tracking errors (see DEFINITIONS)."""
    out = []
    for seg in ctx.segments:
        if seg.mode != "walk":
            continue
        lo = ctx.lead_s + seg.start_s + min(SETTLE_S, seg.duration_s / 2)
        hi = ctx.lead_s + seg.end_s
        if fall_t is not None:
            hi = min(hi, fall_t)
        window = (data.t >= lo - 1e-9) & (data.t < hi - 1e-9)
        row: dict[str, Any] = {"name": seg.name, "grid": seg.grid, "cmd": list(seg.cmd), "samples": int(window.sum())}
        if window.any():
            lin = data.lin_vel_body[window, :2]
            wz = data.ang_vel_body[window, 2]
            cmd = np.asarray(seg.cmd)
            mean = (lin.mean(axis=0), wz.mean())
            row.update(
                achieved=[_num(mean[0][0]), _num(mean[0][1]), _num(mean[1])],
                err_vxy=_num(float(np.hypot(*(mean[0] - cmd[:2])))),
                err_wz=_num(abs(mean[1] - cmd[2])),
                sq_vxy=float(np.sum(np.sum((lin - cmd[:2]) ** 2, axis=1))),
                sq_wz=float(np.sum((wz - cmd[2]) ** 2)),
            )
        out.append(row)
    return out


def _first_event_time(events: Sequence[Mapping[str, Any]], after: float, match) -> float | None:
    times = [e["t_ns"] * 1e-9 for e in events if match(e) and e.get("t_ns", 0) * 1e-9 >= after - 1e-9]
    return min(times) if times else None


def compute(data: TrialData, ctx: TrialContext) -> dict[str, Any]:
    """Every per-trial metric (keys as in DEFINITIONS), JSON-ready, rounded for reproducibility."""
    height = data.pos[:, 2] - data.ground_under_base
    cos_tilt = np.clip(_tilt_cos(data.quat_xyzw), -1.0, 1.0)
    fallen = (height < FALL_HEIGHT_M) | (-cos_tilt > FALL_GRAVITY_Z)
    fell = bool(fallen.any())
    fall_t = float(data.t[np.argmax(fallen)]) if fell else None

    segments = segment_scores(data, ctx, fall_t)
    scored = [s for s in segments if s.get("err_vxy") is not None]
    n_samples = sum(s["samples"] for s in scored)
    metrics: dict[str, Any] = {
        "fell": fell,
        "survived": not fell,
        "time_to_fall_s": _num(fall_t),
        "tracking_vxy_mean_m_s": _num(float(np.mean([s["err_vxy"] for s in scored]))) if scored else None,
        "tracking_vxy_worst_m_s": _num(max(s["err_vxy"] for s in scored)) if scored else None,
        "tracking_vxy_rms_m_s": _num(math.sqrt(sum(s["sq_vxy"] for s in scored) / n_samples)) if n_samples else None,
        "tracking_wz_mean_rad_s": _num(float(np.mean([s["err_wz"] for s in scored]))) if scored else None,
        "tracking_wz_worst_rad_s": _num(max(s["err_wz"] for s in scored)) if scored else None,
        "tracking_wz_rms_rad_s": _num(math.sqrt(sum(s["sq_wz"] for s in scored) / n_samples)) if n_samples else None,
        "base_height_min_m": _num(float(height.min())),
        "tilt_max_deg": _num(math.degrees(math.acos(float(cos_tilt.min())))),
    }
    for s in segments:
        s.pop("sq_vxy", None)
        s.pop("sq_wz", None)

    # Foot slip: horizontal speed of feet in contact at two consecutive instants.
    slip = None
    if data.feet is not None and data.ground_under_feet is not None and len(data.t) > 1:
        gap = data.feet[:, :, 2] - FOOT_RADIUS_M - data.ground_under_feet
        contact = gap < CONTACT_GAP_M
        both = contact[1:] & contact[:-1]
        dt = np.diff(data.t)[:, None]
        speed = np.linalg.norm(np.diff(data.feet[:, :, :2], axis=0), axis=2) / np.where(dt > 0, dt, np.inf)
        if both.any():
            slip = float(speed[both].mean())
    metrics["foot_slip_m_s"] = _num(slip)

    metrics["torque_peak_nm"] = _num(float(np.abs(data.tau).max())) if data.tau.size else None
    metrics["torque_rms_nm"] = _num(float(np.sqrt(np.mean(data.tau**2)))) if data.tau.size else None
    power = np.sum(np.abs(data.tau * data.dq), axis=1) if data.tau.size else np.zeros(0)
    metrics["power_mean_w"] = _num(float(power.mean())) if power.size else None
    speed_xy = np.linalg.norm(data.pos[-1, :2] - data.pos[0, :2]) / max(data.t[-1] - data.t[0], 1e-9)
    moving = data.t >= ctx.lead_s
    mean_speed = float(np.linalg.norm(data.lin_vel_body[moving, :2], axis=1).mean()) if moving.any() else 0.0
    cot = None
    if power.size and mean_speed >= MOVING_SPEED_M_S:
        cot = float(power[moving].mean()) / (ctx.total_mass_kg * 9.81 * mean_speed)
    metrics["cost_of_transport"] = _num(cot)
    metrics["mean_speed_m_s"] = _num(mean_speed)
    metrics["distance_m"] = _num(float(np.linalg.norm(data.pos[-1, :2] - data.pos[0, :2])))
    del speed_xy

    walking = np.zeros(len(data.t), dtype=bool)
    for seg in ctx.segments:
        if seg.mode == "walk":
            walking |= (data.t >= ctx.lead_s + seg.start_s - 1e-9) & (data.t < ctx.lead_s + seg.end_s - 1e-9)
    if fall_t is not None:
        walking &= data.t < fall_t
    pairs = walking[1:] & walking[:-1] & np.all(np.isfinite(data.targets[1:] - data.targets[:-1]), axis=1)
    if pairs.any():
        change = np.abs(np.diff(data.targets, axis=0)[pairs]) / np.asarray(ctx.action_scale)
        metrics["action_rate"] = _num(float(change.mean()))
    else:
        metrics["action_rate"] = None
    on_limit = (np.abs(data.targets - ctx.joint_lower) < 1e-6) | (np.abs(data.targets - ctx.joint_upper) < 1e-6)
    metrics["joint_limit_clips"] = int(on_limit.sum())
    clips = 0
    for seg in ctx.segments:
        if seg.mode != "walk":
            continue
        outside = any(
            not (lo - 1e-9 <= v <= hi + 1e-9)
            for v, (lo, hi) in zip(seg.cmd, (ctx.ranges["vx"], ctx.ranges["vy"], ctx.ranges["wz"]), strict=True)
        )
        clips += round(seg.duration_s / ctx.control_dt) if outside else 0
    metrics["command_clips"] = clips

    faults = [e for e in data.policy_events if "FAULT" in str(e.get("message", ""))]
    metrics["safety_trips"] = len(faults)
    metrics["fault_detect_s"] = metrics["safe_state_s"] = None
    metrics["faulted"] = metrics["safe_reached"] = None
    if ctx.fault_at_s is not None:
        at = ctx.fault_at_s
        fault_t = _first_event_time(faults, at, lambda e: True)
        safe_t = _first_event_time(
            data.bridge_events, at, lambda e: e.get("safe_behaviour") in ("hold", "limp") and e.get("level") == "warn"
        )
        metrics["faulted"] = fault_t is not None
        metrics["safe_reached"] = safe_t is not None
        metrics["fault_detect_s"] = _num(fault_t - at) if fault_t is not None else None
        metrics["safe_state_s"] = _num(safe_t - at) if safe_t is not None else None
    metrics["segments"] = segments
    return metrics


#: The metrics aggregated per scenario (mean and spread over trials), with the resolution below
#: which two policies are not told apart even with no trial-to-trial spread.
AGGREGATED: dict[str, float] = {
    "tracking_vxy_mean_m_s": 0.01,
    "tracking_vxy_worst_m_s": 0.01,
    "tracking_vxy_rms_m_s": 0.01,
    "tracking_wz_mean_rad_s": 0.01,
    "tracking_wz_worst_rad_s": 0.01,
    "tracking_wz_rms_rad_s": 0.01,
    "time_to_fall_s": 0.1,
    "base_height_min_m": 0.005,
    "tilt_max_deg": 0.5,
    "foot_slip_m_s": 0.005,
    "torque_peak_nm": 0.5,
    "torque_rms_nm": 0.2,
    "power_mean_w": 2.0,
    "cost_of_transport": 0.02,
    "action_rate": 0.005,
    "joint_limit_clips": 1.0,
    "command_clips": 1.0,
    "safety_trips": 0.5,
    "fault_detect_s": 0.005,
    "safe_state_s": 0.005,
    "mean_speed_m_s": 0.01,
    "push_survived_m_s": 0.05,
}
#: Which direction is better for each aggregated metric (None: neither, information only).
BETTER: dict[str, str | None] = {
    **{k: "lower" for k in AGGREGATED},
    "base_height_min_m": "higher",
    "time_to_fall_s": "higher",
    "push_survived_m_s": "higher",
    "mean_speed_m_s": None,
}
