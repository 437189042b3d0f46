"""The policy controller: modes, inputs, one control step. No ROS here; the node only moves messages.

Modes: ``idle`` (publishes nothing), ``stand`` (holds the robot, or moves it to the default pose),
``walk`` (the policy, faded in over a soft start), ``fault`` (publishes nothing, latched until
reset). Publishing nothing is the universal safe signal: every bridge falls into its own safe
behaviour when commands stop.

The hand-over (the same rule in simulation and on the robot; docs/JETSON.md explains it):

- Whatever the node takes over from (the robot's own stand, a bridge's hold, its own last target),
  its first target is the one that keeps the torque the joints carry: ``q* = q + (tau + kd dq) / kp``
  from the newest joint_states (measured pose and effort), clipped to the joint limits; without
  efforts, the measured pose. Under the policy's soft gains any other first target makes the robot
  sag or jerk at once (Spot's knees carry ~20 N·m standing: 0.33 rad at kp 60).
- ``stand`` from walk, or from idle with ``q*`` within ``stand_takeover_within_rad`` of the default
  pose: moves from ``q*`` to the default pose over ``stand_duration_s``. From idle farther away it
  publishes nothing: another controller holds the robot in a posture of its own (Spot's own stand:
  its hind feet 17 cm ahead of an Isaac Lab default pose's), which planted feet cannot leave
  without stepping, and which the policy's soft gains hold only marginally (on the emulator a
  kp-60 hold of Spot's stand drifted and tipped 0.3 rad with loads 10 % off). The robot stays with
  that controller (on Spot: its own stand) until walk.
- ``walk``'s soft start blends, over ``soft_start_s``, from the hand-over target (the last stand
  target, or ``q*`` when the node published nothing) to the policy's target ``default + scale *
  action``: step k of N publishes ``from + k/N (policy - from)``. From the default pose that is the
  action faded in; from Spot's stand it is the hand-over to the policy, which steps out of it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

import numpy as np

from spot_policy.core import contract
from spot_policy.core import safety as rules
from spot_policy.core.observation import Measurements, ObservationBuilder, projected_gravity
from spot_policy.core.policy_spec import PolicySpec
from spot_policy.core.stats import Rolling


class Mode(str, Enum):
    IDLE = "idle"
    STAND = "stand"
    WALK = "walk"
    FAULT = "fault"


@dataclass(frozen=True)
class ControllerConfig:
    stand_duration_s: float = 2.0
    soft_start_s: float = 0.5
    #: From idle, stand takes the robot over only if its start is this close to the default pose (rad,
    #: every joint); farther, it leaves the robot to the controller holding it until walk.
    stand_takeover_within_rad: float = 0.2
    input_timeout_s: float | None = None  # None or 0: three control periods
    cmd_vel_timeout_s: float = 0.5


def hand_over_target(
    q: np.ndarray,
    dq: np.ndarray,
    tau: np.ndarray | None,
    kp: np.ndarray,
    kd: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
) -> np.ndarray:
    """The hand-over target ``q*``: the one that reproduces the torque the joints carry now.

    From tau = kp (q* - q) - kd dq: q* = q + (tau + kd dq) / kp, clipped to the joint limits. A limp
    robot (tau ~ 0) starts from its measured pose; one held up by any controller (a bridge's hold,
    the robot's own stand) keeps its torque at the hand-over instead of first sagging under the
    policy's soft gains. Without efforts (``tau`` None or not finite), the measured pose. It relies on
    the effort being the torque about the joint's axis (the robot's ``load``: docs/JETSON.md). The
    policy node and the robot bridge (at each activation) both hand over so.
    """
    q = np.asarray(q, dtype=np.float64)
    if tau is None or not rules.all_finite(tau):
        return q.copy()
    return np.clip(q + (np.asarray(tau) + kd * np.asarray(dq)) / kp, lower, upper)


class Command(NamedTuple):
    """Joint targets to publish, with the joint names the bridge used."""

    names: tuple[str, ...]
    positions: np.ndarray


Event = Callable[[str, str], None]  # (level, message)


class PolicyController:
    def __init__(
        self,
        spec: PolicySpec,
        policy: Callable[[np.ndarray], np.ndarray],
        config: ControllerConfig = ControllerConfig(),
        on_event: Event | None = None,
    ) -> None:
        self.spec = spec
        self.policy = policy
        self.config = config
        self.limits = rules.SafetyLimits.for_control_dt(
            spec.control_dt, config.input_timeout_s, config.cmd_vel_timeout_s
        )
        self.watchdog = rules.InputWatchdog(self.limits)
        self._control_dt = spec.control_dt
        # Built straight into the ONNX policy's bound input (the loader has checked its size).
        self.observations = ObservationBuilder(spec, out=getattr(policy, "input_buffer", None))
        self.m = Measurements()
        self.mode = Mode.IDLE
        self.fault_reason = ""
        self._emit: Event = on_event or (lambda level, msg: None)
        self._walk_inputs = rules.required_inputs(t.func for t in spec.obs_terms)
        action_index = contract.index_map(contract.ISAAC_JOINT_ORDER, spec.action.joint_names)
        # None when the action is already in articulation order (the usual case): no reordering.
        self._action_index = None if action_index == sorted(action_index) else np.array(action_index)
        self._action = spec.action
        self._lower, self._upper = spec.joint_lower, spec.joint_upper
        self._soft_start_steps = max(1, round(config.soft_start_s / spec.control_dt))
        self.last_action = np.zeros(spec.action_dim, dtype=np.float32)
        self.last_targets: np.ndarray | None = None
        self._walk_steps = 0
        self._stand_from: np.ndarray | None = None
        self._stand_publishes = True  # False: the stand leaves the robot to the controller holding it
        self._stand_t0 = 0.0
        self._soft_from: np.ndarray | None = None  # where walk's soft start blends from
        # Joint-name mapping for the last joint_states layout seen (cached: layouts rarely change).
        self._layout: tuple[str, ...] = ()
        self._layout_index: np.ndarray | None = None
        self._out_names: tuple[str, ...] = contract.ISAAC_JOINT_ORDER
        self.missing_joints: tuple[str, ...] = contract.ISAAC_JOINT_ORDER
        self._joint_state_valid = False
        self._joint_effort: np.ndarray | None = None
        # Input-triggered mode: the stamp of the joint_states that asked for a step, and the
        # newest stamp seen per input (a step waits for imu/odom of the same instant).
        self._pending_stamp: float | None = None
        self._stamps: dict[str, float] = {}
        # Figures for diagnostics.
        self.counters = {
            "steps": 0,
            "faults": 0,
            "command_clips": 0,
            "joint_limit_clips": 0,
            "cmd_vel_timeouts": 0,
            "bad_messages": 0,
            "late_steps": 0,
        }
        self.plausibility = rules.Plausibility()
        self.duplicate_joints: tuple[str, ...] = ()
        self.inference_us = Rolling(500)
        self.step_us = Rolling(500)
        self.period_jitter_s = Rolling(500)  # |step interval - control period|, steady clock
        self.input_counts: dict[str, int] = {n: 0 for n in (*rules.STATE_INPUTS, rules.INPUT_CMD_VEL)}
        self._last_step_wall: float | None = None
        self._cmd_vel_was_fresh = False

    # ------------------------------------------------------------------ inputs
    def joint_state(
        self,
        names: Sequence[str],
        position: Sequence[float],
        velocity: Sequence[float],
        now: float,
        stamp: float = 0.0,
        effort: Sequence[float] = (),
    ) -> None:
        names = tuple(names)
        if names != self._layout:
            self._map_layout(names)
        if self._layout_index is None:
            self._joint_state_valid = False
            if self.duplicate_joints:
                self._fault(f"joint_states names {', '.join(self.duplicate_joints)} more than once")
            elif self.mode in (Mode.STAND, Mode.WALK):
                self._fault(f"joint_states lacks joints {', '.join(self.missing_joints)}")
            return
        pos, vel = np.asarray(position, dtype=float), np.asarray(velocity, dtype=float)
        if pos.size != len(names) or vel.size != len(names):
            self._joint_state_valid = False
            self._fault(f"joint_states has {len(names)} names but {pos.size} positions and {vel.size} velocities")
            return
        q, dq = pos[self._layout_index], vel[self._layout_index]
        if not (rules.all_finite(q) and rules.all_finite(dq)):
            bad = "position" if not rules.all_finite(q) else "velocity"
            joint = contract.ISAAC_JOINT_ORDER[int(np.argmin(np.isfinite(q if bad == "position" else dq)))]
            self._fault(f"joint_states has NaN/inf {bad} for {joint}")
            return
        problem = rules.implausible_joints(
            contract.ISAAC_JOINT_ORDER, q, dq, self._lower, self._upper, self.plausibility
        ) or rules.stamp_from_the_future(stamp, now, self.plausibility)
        if problem is not None:
            self._joint_state_valid = False
            self._fault(f"joint_states: {problem}")
            return
        self.m.joint_pos[:] = q
        self.m.joint_vel[:] = dq
        tau = np.asarray(effort, dtype=float)
        self._joint_effort = tau[self._layout_index] if tau.size == len(names) else None
        self._joint_state_valid = True
        self._seen(rules.INPUT_JOINT_STATES, now, stamp)
        self._pending_stamp = stamp

    def imu(
        self, orientation_xyzw: Sequence[float], angular_velocity: Sequence[float], now: float, stamp: float = 0.0
    ) -> None:
        if not math.isfinite(sum(orientation_xyzw) + sum(angular_velocity)):
            bad = rules.first_non_finite({"orientation": orientation_xyzw, "angular_velocity": angular_velocity})
            self._fault(f"imu/data has NaN/inf {bad}")
            return
        problem = rules.implausible_imu(orientation_xyzw, angular_velocity, self.plausibility)
        problem = problem or rules.stamp_from_the_future(stamp, now, self.plausibility)
        if problem is not None:
            self._fault(f"imu/data: {problem}")
            return
        try:
            self.m.gravity[:] = projected_gravity(np.asarray(orientation_xyzw, dtype=float))
        except ValueError:
            self._fault("imu/data orientation is a zero quaternion")
            return
        self.m.base_ang_vel[:] = angular_velocity
        self._seen(rules.INPUT_IMU, now, stamp)

    def odom(self, linear_velocity_body: Sequence[float], now: float, stamp: float = 0.0) -> None:
        if not math.isfinite(sum(linear_velocity_body)):
            self._fault("odom has NaN/inf twist.linear")
            return
        problem = rules.implausible_twist(linear_velocity_body, self.plausibility)
        problem = problem or rules.stamp_from_the_future(stamp, now, self.plausibility)
        if problem is not None:
            self._fault(f"odom: {problem}")
            return
        self.m.base_lin_vel[:] = linear_velocity_body
        self._seen(rules.INPUT_ODOM, now, stamp)

    def cmd_vel(self, vx: float, vy: float, wz: float, now: float) -> None:
        command = np.array([vx, vy, wz], dtype=float)
        if not math.isfinite(vx + vy + wz):
            self._fault("cmd_vel has NaN/inf")
            return
        clipped, was_clipped = rules.clip_command(command, self.spec.command_ranges)
        self.counters["command_clips"] += int(was_clipped)
        self.m.command[:] = clipped
        self.watchdog.seen(rules.INPUT_CMD_VEL, now)
        self.input_counts[rules.INPUT_CMD_VEL] += 1

    def bad_input(self, name: str, reason: str, now: float) -> None:
        """A message of input ``name`` that could not be read at all: counted, and a fault when the
        current mode needs that input (an unreadable state is no state)."""
        self.counters["bad_messages"] += 1
        if name in self.required_inputs():
            self._fault(f"{name}: a message could not be read ({reason})")

    def _seen(self, name: str, now: float, stamp: float) -> None:
        self.watchdog.seen(name, now)
        self.input_counts[name] += 1
        self._stamps[name] = stamp

    def _map_layout(self, names: tuple[str, ...]) -> None:
        canonical = {contract.canonical_joint_name(n): i for i, n in enumerate(names)}
        canonical.pop(None, None)
        self._layout = names
        seen = [contract.canonical_joint_name(n) for n in names]
        self.duplicate_joints = tuple(sorted({j for j in seen if j is not None and seen.count(j) > 1}))
        if self.duplicate_joints:
            self.missing_joints = ()
            self._layout_index = None
            return
        self.missing_joints = tuple(j for j in contract.ISAAC_JOINT_ORDER if j not in canonical)
        if self.missing_joints:
            self._layout_index = None
            return
        self._layout_index = np.array([canonical[j] for j in contract.ISAAC_JOINT_ORDER])
        self._out_names = tuple(names[i] for i in self._layout_index)

    # ------------------------------------------------------------------ modes
    def required_inputs(self, mode: Mode | None = None) -> tuple[str, ...]:
        mode = mode or self.mode
        if mode is Mode.WALK:
            return self._walk_inputs
        if mode is Mode.STAND:
            return (rules.INPUT_JOINT_STATES,)
        return ()

    def readiness(self, mode: Mode, now: float) -> list[str]:
        """What keeps the controller from entering ``mode`` now (empty when it can)."""
        problems = self.watchdog.problems(self.required_inputs(mode), now)
        if rules.INPUT_JOINT_STATES in self.watchdog.last or self._layout:
            if self.missing_joints:
                problems.insert(0, f"joint_states lacks joints {', '.join(self.missing_joints)}")
            elif not self._joint_state_valid:
                problems.insert(0, "the last joint_states was invalid")
        return problems

    def request(self, mode: Mode, now: float) -> tuple[bool, str]:
        """A mode switch asked for through a service; returns (accepted, message)."""
        if mode is Mode.IDLE:
            if self.mode is Mode.FAULT:
                return False, f"in fault ({self.fault_reason}); already publishing nothing, call reset to clear it"
            self._enter(Mode.IDLE, "stop requested: publishing nothing")
            return True, "idle: publishing nothing"
        if mode is Mode.FAULT:
            raise ValueError("fault is entered by the watchdogs, not requested")
        if self.mode is Mode.FAULT:
            return False, f"in fault ({self.fault_reason}); call reset first"
        if mode is self.mode:
            # Nothing switches: the mode goes on and its own step checks the inputs (a request that
            # lands in a pause of the machine, inputs 70 ms old, must not read as a refusal).
            return True, "standing" if mode is Mode.STAND else "walking"
        problems = self.readiness(mode, now)
        if problems:
            return False, f"cannot {mode.value}: " + "; ".join(problems)
        if mode is Mode.STAND:
            self._start_stand(now)
            return True, "standing"
        if self.mode is not Mode.WALK:
            published = self.mode is Mode.STAND and self._stand_publishes and self.last_targets is not None
            self._soft_from = self.last_targets.copy() if published else self._bumpless_start()
            self.observations.reset()
            self.last_action[:] = 0.0
            self._walk_steps = 0
            self._enter(Mode.WALK, f"walk: policy running at {self.spec.control_rate_hz:.0f} Hz")
        return True, "walking"

    def _start_stand(self, now: float) -> None:
        """Stand from ``q*`` to the default pose; or, from idle far from it, leave the robot where it is."""
        start = self._bumpless_start()
        default = self.spec.default_joint_pos
        away = float(np.max(np.abs(start - default)))
        leave = self.mode is not Mode.WALK and away > self.config.stand_takeover_within_rad
        self._stand_from, self._stand_t0, self._stand_publishes = start, now, not leave
        if leave:
            joint = contract.ISAAC_JOINT_ORDER[int(np.argmax(np.abs(start - default)))]
            message = (
                f"stand: the robot stands in a posture of the controller holding it ({away:.2f} rad from the default "
                f"pose at {joint}, beyond stand_takeover_within_rad {self.config.stand_takeover_within_rad:g}): "
                "publishing nothing leaves it there; walk hands it over to the policy"
            )
        else:
            message = f"stand: moving to the default pose over {self.config.stand_duration_s:.1f} s"
        self._enter(Mode.STAND, message)

    def reset(self) -> tuple[bool, str]:
        """Clear a latched fault and go idle."""
        was = self.fault_reason
        self.fault_reason = ""
        self.observations.reset()
        self.last_action[:] = 0.0
        self._enter(Mode.IDLE, "reset: idle" + (f" (cleared fault: {was})" if was else ""))
        return True, "idle" + (f"; cleared fault: {was}" if was else "")

    def _enter(self, mode: Mode, message: str) -> None:
        self.mode = mode
        self._emit("info", message)

    def _fault(self, reason: str) -> None:
        if self.mode is Mode.FAULT:
            return
        self.mode = Mode.FAULT
        self.fault_reason = reason
        self.counters["faults"] += 1
        self._emit("error", f"FAULT: {reason}; publishing nothing until reset")

    # ------------------------------------------------------------------ stepping
    def input_step_due(self) -> bool:
        """Input-triggered mode: a joint_states arrived and the other inputs of that instant have too."""
        if self._pending_stamp is None:
            return False
        if any(
            self._stamps.get(n, -np.inf) < self._pending_stamp
            for n in self.required_inputs()
            if n != rules.INPUT_JOINT_STATES
        ):
            return False
        self._pending_stamp = None
        return True

    def check_watchdogs(self, now: float) -> None:
        """Fault if an input the current mode needs is stale; the node calls this at the control rate."""
        problems = self.watchdog.problems(self.required_inputs(), now)
        if problems:
            self._fault("; ".join(problems))

    def step(self, now: float) -> Command | None:
        """One control step: the targets to publish, or None (publish nothing)."""
        t0 = time.perf_counter()
        if self._last_step_wall is not None:
            interval = t0 - self._last_step_wall
            self.period_jitter_s.add(abs(interval - self._control_dt))
            # A deadline missed: the step came more than half a period late (real time; in lockstep
            # steps come as fast as the simulator runs, never late).
            self.counters["late_steps"] += interval > 1.5 * self._control_dt
        self._last_step_wall = t0
        self.check_watchdogs(now)
        if self.mode is Mode.STAND:
            targets = self._stand_targets(now)
        elif self.mode is Mode.WALK:
            targets = self._walk_targets(now)
        else:
            return None
        if targets is None:
            return None
        n_outside = rules.clip_to_limits(targets, self._lower, self._upper)
        if n_outside:
            # The only finiteness check of a step (NaN counts as outside): in walk the targets are
            # the policy's output scaled and offset by finite numbers, so NaN there came from it.
            if not rules.all_finite(targets):
                where = "policy output" if self.mode is Mode.WALK else "computed joint targets"
                self._fault(f"{where} holds NaN/inf")
                return None
            self.counters["joint_limit_clips"] += n_outside
        self.counters["steps"] += 1
        self.last_targets = targets
        self.step_us.add((time.perf_counter() - t0) * 1e6)
        return Command(self._out_names, targets)

    def _bumpless_start(self) -> np.ndarray:
        """The hand-over target ``q*`` of the newest joint_states (:func:`hand_over_target`)."""
        spec = self.spec
        return hand_over_target(
            self.m.joint_pos, self.m.joint_vel, self._joint_effort, spec.stiffness, spec.damping,
            spec.joint_lower, spec.joint_upper,
        )  # fmt: skip

    def _stand_targets(self, now: float) -> np.ndarray | None:
        if not self._stand_publishes:
            return None
        start = self._stand_from if self._stand_from is not None else self.m.joint_pos
        duration = self.config.stand_duration_s
        alpha = 1.0 if duration <= 0 else min(1.0, max(0.0, (now - self._stand_t0) / duration))
        return start + alpha * (self.spec.default_joint_pos - start)

    def _walk_targets(self, now: float) -> np.ndarray | None:
        fresh = self.watchdog.cmd_vel_fresh(now)
        if not fresh:
            if self._cmd_vel_was_fresh:
                self.counters["cmd_vel_timeouts"] += 1
                self._emit("warn", "cmd_vel timed out: commanding zero velocity")
            self.m.command[:] = 0.0
        self._cmd_vel_was_fresh = fresh
        obs = self.observations.build(self.m, self.last_action)
        t0 = time.perf_counter()
        raw = np.asarray(self.policy(obs), dtype=np.float32)
        self.inference_us.add((time.perf_counter() - t0) * 1e6)
        action = self._action
        if action.raw_clip is not None:
            np.clip(raw, -action.raw_clip, action.raw_clip, out=raw)
        # Few numpy calls: after the inference each one costs 0.5-1.5 us (cold caches). The targets
        # are a new array (the caller keeps them); step() clips them and checks finiteness.
        processed = np.multiply(action.scale, raw)
        processed += action.offset
        self.last_action = raw
        if action.clip is not None:
            np.clip(processed, action.clip[:, 0], action.clip[:, 1], out=processed)
        if self._action_index is None:
            targets = processed
        else:
            targets = np.empty(len(contract.ISAAC_JOINT_ORDER))
            targets[self._action_index] = processed
        if self._walk_steps < self._soft_start_steps:
            # Soft start: from the hand-over target to the policy's, a 1/N more each step.
            self._walk_steps += 1
            start = self._soft_from if self._soft_from is not None else self.spec.default_joint_pos
            targets -= start
            targets *= self._walk_steps / self._soft_start_steps
            targets += start
        return targets

    @property
    def last_observation(self) -> np.ndarray:
        """The observation of the last walk step: the builder's buffer, valid until the next step."""
        return self.observations.obs

    @property
    def cmd_vel_fresh(self) -> bool:
        """Whether the last walk step had a live cmd_vel (False: it commanded zero)."""
        return self._cmd_vel_was_fresh

    # ------------------------------------------------------------------ reporting
    def status(self, now: float) -> dict[str, object]:
        ages = {n: self.watchdog.age(n, now) for n in (*rules.STATE_INPUTS, rules.INPUT_CMD_VEL)}
        return {
            "mode": self.mode.value,
            "fault": self.fault_reason,
            "missing_joints": list(self.missing_joints),
            "input_ages_s": ages,
            "inference_us_median": self.inference_us.median,
            "inference_us_p99": self.inference_us.p99,
            "step_us_median": self.step_us.median,
            "step_us_p99": self.step_us.p99,
            "period_jitter_ms_median": self.period_jitter_s.median * 1e3,
            "period_jitter_ms_p99": self.period_jitter_s.p99 * 1e3,
            **self.counters,
        }
