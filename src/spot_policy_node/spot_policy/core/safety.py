"""The safety rules, in one place. The controller applies them; the bridges never see a bad target.

- An input the current mode needs that is older than its limit is a fault naming the input (older
  by more than :data:`AGE_TOLERANCE_S`: an input exactly at the limit is not stale, whatever the
  rounding of the clock's seconds and whichever of the clock and the input the node reads first).
- ``cmd_vel`` older than its timeout is a zero command (not a fault).
- NaN or inf in any input or in the policy's output is a fault.
- Missing joints keep the node idle (or fault it when active), naming them.
- Commands are clipped to the ranges the policy was trained on; targets to the joint limits.
- Implausible values are faults (:class:`Plausibility`): joint positions far beyond the joint
  limits, joint or base speeds no Spot reaches, a non-unit orientation, a stamp far in the future.
  A corrupted encoder or a broken publisher must not drive the policy into full-range targets.
- A message that cannot be read at all (truncated, random bytes) is counted and, when the current
  mode needs that input, a fault naming it (the nodes' readers never raise: ``spot_policy.ros``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

INPUT_JOINT_STATES = "joint_states"
INPUT_IMU = "imu/data"
INPUT_ODOM = "odom"
INPUT_CMD_VEL = "cmd_vel"
STATE_INPUTS = (INPUT_JOINT_STATES, INPUT_IMU, INPUT_ODOM)

#: Which input each observation function reads.
TERM_INPUTS = {
    "base_lin_vel": INPUT_ODOM,
    "base_ang_vel": INPUT_IMU,
    "projected_gravity": INPUT_IMU,
    "joint_pos_rel": INPUT_JOINT_STATES,
    "joint_vel_rel": INPUT_JOINT_STATES,
}


@dataclass(frozen=True)
class SafetyLimits:
    input_timeout_s: float
    cmd_vel_timeout_s: float = 0.5

    @staticmethod
    def for_control_dt(control_dt: float, input_timeout_s: float | None = None, cmd_vel_timeout_s: float = 0.5):
        """Default input limit: three control periods (60 ms at 50 Hz)."""
        timeout = input_timeout_s if input_timeout_s and input_timeout_s > 0 else 3.0 * control_dt
        return SafetyLimits(timeout, cmd_vel_timeout_s)


#: Ages are differences of float seconds: at epoch times (1.8e9 s) one rounding step is 0.24 us, so
#: an input exactly three periods old could read as 0.0600000002 s and trip a 0.06 s limit or not,
#: depending on the stamps' digits. In lockstep two dropped instants put an input at exactly the limit
#: when the node's control timer checks it; ages within this of the limit count as at the limit.
AGE_TOLERANCE_S = 1e-6


class InputWatchdog:
    """Receipt times of each input on the node's clock (sim time under ``use_sim_time``)."""

    def __init__(self, limits: SafetyLimits) -> None:
        self.limits = limits
        self.last: dict[str, float] = {}

    def seen(self, name: str, now: float) -> None:
        self.last[name] = now

    def age(self, name: str, now: float) -> float | None:
        t = self.last.get(name)
        return None if t is None else max(0.0, now - t)

    def problems(self, required: Iterable[str], now: float) -> list[str]:
        """One phrase per required input that is missing or stale (runs every step: cheap when all is well)."""
        limit, last = self.limits.input_timeout_s + AGE_TOLERANCE_S, self.last
        out: list[str] = []
        for name in required:
            t = last.get(name)
            if t is None:
                out.append(f"{name} never received")
            elif now - t > limit:
                out.append(f"{name} is stale ({now - t:.3f} s old, limit {self.limits.input_timeout_s:.3f} s)")
        return out

    def cmd_vel_fresh(self, now: float) -> bool:
        t = self.last.get(INPUT_CMD_VEL)
        return t is not None and now - t <= self.limits.cmd_vel_timeout_s + AGE_TOLERANCE_S


@dataclass(frozen=True)
class Plausibility:
    """What a Spot's measured state can be. Beyond it the value is broken, not the robot: a fault.

    Each bound is far outside what the robot does, so a real robot never trips it: Spot walks at
    up to 1.6 m/s and turns at about 2 rad/s (Boston Dynamics' specifications); its joints stay
    within their limits (SPOT.md) but for a little overshoot under impact; leg joints move at
    around 10 rad/s at most in a gait. An IMU quaternion is unit length to float precision.
    """

    joint_limit_margin_rad: float = 0.3
    max_joint_speed_rad_s: float = 40.0
    max_base_speed_m_s: float = 8.0
    max_base_turn_rate_rad_s: float = 20.0
    quaternion_norm_tolerance: float = 0.05
    #: A stamp this far ahead of the node's clock is from a broken clock or publisher.
    max_stamp_ahead_s: float = 1.0


def implausible_joints(
    names: Sequence[str],
    q: np.ndarray,
    dq: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    limits: Plausibility,
) -> str | None:
    """The first joint position far beyond its range or speed beyond any gait, named with its limit."""
    margin = limits.joint_limit_margin_rad
    outside = np.flatnonzero((q < lower - margin) | (q > upper + margin))
    if outside.size:
        i = int(outside[0])
        return (
            f"{names[i]} position {q[i]:.3f} rad is beyond its range [{lower[i]:.3f}, {upper[i]:.3f}] by more "
            f"than {margin:g} rad"
        )
    fast = np.flatnonzero(np.abs(dq) > limits.max_joint_speed_rad_s)
    if fast.size:
        i = int(fast[0])
        return f"{names[i]} velocity {dq[i]:.1f} rad/s is beyond {limits.max_joint_speed_rad_s:g} rad/s"
    return None


def implausible_imu(
    orientation_xyzw: Sequence[float], angular_velocity: Sequence[float], limits: Plausibility
) -> str | None:
    norm = math.sqrt(sum(v * v for v in orientation_xyzw))
    if abs(norm - 1.0) > limits.quaternion_norm_tolerance:
        tolerance = limits.quaternion_norm_tolerance
        return f"orientation quaternion has norm {norm:.3f} (a unit quaternion has 1 +- {tolerance:g})"
    rate = math.sqrt(sum(v * v for v in angular_velocity))
    if rate > limits.max_base_turn_rate_rad_s:
        return f"angular velocity {rate:.1f} rad/s is beyond {limits.max_base_turn_rate_rad_s:g} rad/s"
    return None


def implausible_twist(linear_velocity: Sequence[float], limits: Plausibility) -> str | None:
    speed = math.sqrt(sum(v * v for v in linear_velocity))
    if speed > limits.max_base_speed_m_s:
        return f"base speed {speed:.1f} m/s is beyond {limits.max_base_speed_m_s:g} m/s"
    return None


def stamp_from_the_future(stamp: float, now: float, limits: Plausibility) -> str | None:
    if stamp - now > limits.max_stamp_ahead_s:
        ahead = stamp - now
        return f"stamp {stamp:.3f} s is {ahead:.3f} s ahead of the node's clock (limit {limits.max_stamp_ahead_s:g} s)"
    return None


def required_inputs(term_funcs: Iterable[str]) -> tuple[str, ...]:
    needed = {TERM_INPUTS[f] for f in term_funcs if f in TERM_INPUTS} | {INPUT_JOINT_STATES}
    return tuple(n for n in STATE_INPUTS if n in needed)


def first_non_finite(fields: Mapping[str, np.ndarray | Iterable[float]]) -> str | None:
    """Name of the first field holding NaN or inf, else None."""
    for name, values in fields.items():
        if not np.all(np.isfinite(np.asarray(values, dtype=float))):
            return name
    return None


def clip_command(command: np.ndarray, ranges: Mapping[str, tuple[float, float]]) -> tuple[np.ndarray, bool]:
    """Clip (vx, vy, wz) to the trained ranges; returns the command and whether it was clipped."""
    lo = np.array([ranges["lin_vel_x"][0], ranges["lin_vel_y"][0], ranges["ang_vel_z"][0]])
    hi = np.array([ranges["lin_vel_x"][1], ranges["lin_vel_y"][1], ranges["ang_vel_z"][1]])
    clipped = np.clip(command, lo, hi)
    return clipped, bool(np.any(clipped != command))


# The two functions below run every control step: they call ufuncs directly (numpy's Python
# wrappers such as np.clip or ndarray.any cost more than the arithmetic on 12 values).


def clip_to_limits(targets: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> int:
    """Clip joint targets to the joint limits in place; returns how many were outside them.

    NaN counts as outside and stays NaN, so a caller only needs a finiteness check when n > 0.
    """
    inside = np.greater_equal(targets, lower)
    np.logical_and(inside, np.less_equal(targets, upper), out=inside)
    n = len(targets) - int(np.count_nonzero(inside))
    if n:
        np.minimum(np.maximum(targets, lower, out=targets), upper, out=targets)
    return n


def all_finite(values: np.ndarray) -> bool:
    """True when no element is NaN or inf (one reduction: a sum is finite only if every term is)."""
    return math.isfinite(np.add.reduce(values, axis=None))
