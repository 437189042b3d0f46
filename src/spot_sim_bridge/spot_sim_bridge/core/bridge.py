"""The simulator bridge's core: one backend, the joint_command rules, the safe behaviour and the timing.

No ROS here. The node (``sim_bridge_node``) only moves messages in and out; this module decides
what the simulated robot does with each joint_command, what it does when commands stop, and when
physics steps and state messages happen. So the safety rules are tested without a ROS graph.

Safe behaviours (``SafeBehaviour``):
- ``reset_pose``: no joint_command since start or reset: PD on the reset pose (the policy's
  default pose unless a reset pose was given). Entered at start and by every reset.
- ``hold`` / ``limp``: commands stopped for longer than the timeout (``on_command_loss``): keep the
  last targets, or zero stiffness with damping only.
- ``none``: following joint_command.
A valid joint_command leaves any of them; a rejected one changes nothing.

Sim time is a count of physics steps since the core was made: it does not go back on reset,
because ROS nodes on ``use_sim_time`` treat a clock jump backwards as a fault.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from spot_policy.core import contract
from spot_policy.core.loader import load_spec
from spot_policy.core.locate import locate_run
from spot_policy.core.policy_spec import PolicySpec
from spot_policy.core.stats import Rolling
from spot_sim_bridge.core.backend import RobotState, SimBackend
from spot_sim_bridge.core.sensors import Sensed, SensorConfig, SensorModel
from spot_sim_bridge.core.terrain import TerrainSpec

#: Backends this package can build by name ("isaac" needs Isaac Sim 5.x or 6.x installed: docs/ISAAC_SIM.md).
BACKENDS: tuple[str, ...] = ("mujoco", "isaac")
#: Isaac Lab randomizes the actuator delay over 0-4 physics steps at 500 Hz: 0-8 ms.
MAX_COMMAND_DELAY_MS = 8.0
#: Latency added on top of it (a slow link, a loaded computer): the evaluation sweeps 0-40 ms.
MAX_ADDED_COMMAND_LATENCY_MS = 100.0
#: Actuator strength scales the evaluation sweeps (0.8-1.2) sit well inside these.
ACTUATOR_SCALE_RANGE = (0.1, 3.0)

Event = Callable[[str, str], None]  # (level: "info" | "warn" | "error", message)


@dataclass(frozen=True)
class Actuation:
    """What the bridge takes from the policy config: PD gains, the reset pose and the rates.

    The same config the policy node loads, so gains are never invented per bridge (DESIGN.md).
    """

    joint_names: tuple[str, ...]  # order of the arrays below
    kp: np.ndarray
    kd: np.ndarray
    default_joint_pos: np.ndarray
    physics_dt: float
    decimation: int
    source: str = ""  # where it was read from, for messages

    @property
    def control_dt(self) -> float:
        return self.physics_dt * self.decimation

    @classmethod
    def from_spec(cls, spec: PolicySpec) -> Actuation:
        return cls(
            joint_names=tuple(spec.joint_names),
            kp=np.asarray(spec.stiffness, dtype=np.float64).copy(),
            kd=np.asarray(spec.damping, dtype=np.float64).copy(),
            default_joint_pos=np.asarray(spec.default_joint_pos, dtype=np.float64).copy(),
            physics_dt=float(spec.physics_dt),
            decimation=int(spec.decimation),
            source=str(spec.env_yaml),
        )

    def in_order(self, values: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """``values`` (in this actuation's joint order) rearranged into ``names``' order, by name."""
        return np.asarray(values, dtype=np.float64)[contract.index_map(self.joint_names, names)]

    def default_pose(self) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.joint_names, self.default_joint_pos, strict=True)}


def load_actuation(policy: str | Path, logs_root: Path | None = None, policies_dir: Path | None = None) -> Actuation:
    """Gains, pose and rates of a policy given as the policy node takes it (run folder, onnx, name, latest).

    Raises :class:`spot_policy.core.errors.PolicyLoadError`. The ONNX model is not opened.
    """
    return Actuation.from_spec(load_spec(locate_run(policy, logs_root, policies_dir)))


def make_backend(
    name: str,
    physics_dt: float,
    friction: float = 0.8,
    payload_kg: float = 0.0,
    asset_path: str | None = None,
    terrain: TerrainSpec | None = None,
    env_yaml: str | Path | None = None,
) -> SimBackend:
    """Build a backend by name; an unknown name is a ``ValueError`` that lists what exists.

    ``asset_path``: the robot model to load instead of the backend's own (MuJoCo: an MJCF file;
    Isaac Sim: a Spot USD, default the assets root's BostonDynamics spot.usd). ``env_yaml``: the
    policy's env.yaml (Isaac Sim takes its physics scene and spawn settings from it). A backend whose
    simulator is not installed raises :class:`~spot_sim_bridge.core.backend.BackendUnavailable` at once,
    saying what to install. Simulators are imported only here, for the backend asked for.
    """
    if name == "mujoco":
        from spot_sim_bridge.backends.mujoco import MujocoSpot  # imports MuJoCo (and picks its GL) lazily

        return MujocoSpot(
            physics_dt=physics_dt, friction=friction, payload_kg=payload_kg, model_path=asset_path, terrain=terrain
        )
    if terrain is not None and not terrain.flat:
        raise ValueError(f"terrain '{terrain.kind}' is built by the mujoco backend only; use backend mujoco")
    if name == "isaac":
        from spot_sim_bridge.backends.isaac import IsaacSpot, require_isaacsim  # no isaacsim import yet

        require_isaacsim()
        return IsaacSpot(
            physics_dt=physics_dt, friction=friction, payload_kg=payload_kg, usd_path=asset_path, env_yaml=env_yaml
        )
    raise ValueError(f"backend '{name}' does not exist; available: {', '.join(BACKENDS)}")


def command_delay_steps(delay_ms: float, physics_dt: float) -> int:
    """A command delay in ms as whole physics steps (rounded), within Isaac Lab's 0-8 ms."""
    if not math.isfinite(delay_ms) or not 0.0 <= delay_ms <= MAX_COMMAND_DELAY_MS:
        raise ValueError(f"command_delay_ms must be within 0-{MAX_COMMAND_DELAY_MS:g} ms, got {delay_ms}")
    return round(delay_ms * 1e-3 / physics_dt)


def pose_by_name(names: Sequence[str], positions: Sequence[float]) -> dict[str, float]:
    """A partial pose {contract name: rad} from any joint-name convention; ``ValueError`` if unusable."""
    if len(names) != len(positions):
        raise ValueError(f"{len(names)} names but {len(positions)} positions")
    pose: dict[str, float] = {}
    for name, value in zip(names, positions, strict=True):
        joint = contract.canonical_joint_name(name)
        if joint is None:
            raise ValueError(f"'{name}' is not one of Spot's leg joints")
        if joint in pose:
            raise ValueError(f"joint {joint} is given twice")
        if not math.isfinite(value):
            raise ValueError(f"{name} is {value}")
        pose[joint] = float(value)
    return pose


def pose_from_text(text: str) -> dict[str, float]:
    """The ``initial_pose`` parameter: ``"fl_hx=0.1, fl_kn=-1.4"`` (any joint-name convention) as a
    partial pose; empty: none. ``ValueError`` naming the bad entry."""
    names: list[str] = []
    values: list[float] = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, sep, value = entry.partition("=")
        try:
            values.append(float(value))
        except ValueError:
            raise ValueError(f"'{entry}' is not joint=radians") from None
        if not sep:
            raise ValueError(f"'{entry}' is not joint=radians")
        names.append(name.strip())
    return pose_by_name(names, values)


class CommandLoss(str, Enum):
    """What the robot does when joint_command stops (parameter ``on_command_loss``)."""

    HOLD = "hold"
    LIMP = "limp"


class SafeBehaviour(str, Enum):
    NONE = "none"
    RESET_POSE = "reset_pose"
    HOLD = "hold"
    LIMP = "limp"


@dataclass(frozen=True)
class BridgeConfig:
    command_timeout_s: float = 0.1  # sim seconds without a valid joint_command before the safe behaviour
    on_command_loss: CommandLoss = CommandLoss.HOLD
    command_delay_ms: float = 0.0
    state_rate_hz: float = 333.0  # realtime mode's state stream (Spot's own is about 333 Hz)
    added_command_latency_ms: float = 0.0  # on top of command_delay_ms, whole physics steps
    kp_scale: float = 1.0  # actuator strength: the policy's kp times this
    torque_limit_scale: float = 1.0  # actuator strength: hip and knee torque limits times this
    payload_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # payload position from the body COM, m
    sensors: SensorConfig = dataclasses.field(default_factory=SensorConfig)  # exact by default


class BridgeCore:
    """One simulated Spot behind the bridge's rules. Not thread-safe: the node serializes calls."""

    #: Rejected commands are logged once per reason and then at most once per this many sim seconds.
    REJECT_LOG_PERIOD_S = 1.0

    def __init__(
        self,
        backend: SimBackend,
        actuation: Actuation,
        config: BridgeConfig = BridgeConfig(),
        on_event: Event | None = None,
    ) -> None:
        dt = float(backend.physics_dt)
        if not math.isclose(dt, actuation.physics_dt, rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(
                f"physics dt mismatch: the policy was trained with sim.dt {actuation.physics_dt:g} s "
                f"({actuation.source or 'policy config'}) but the {type(backend).__name__} backend steps "
                f"{dt:g} s; build the backend with the policy's dt"
            )
        loss = CommandLoss(config.on_command_loss)  # ValueError names the bad value
        if not math.isfinite(config.command_timeout_s) or config.command_timeout_s <= actuation.control_dt:
            raise ValueError(
                f"command_timeout_s {config.command_timeout_s:g} s must exceed one control period "
                f"({actuation.control_dt:g} s), or every command would time out before the next one"
            )
        if not math.isfinite(config.state_rate_hz) or config.state_rate_hz <= 0.0:
            raise ValueError(f"state_rate_hz must be > 0, got {config.state_rate_hz}")
        self.backend = backend
        self.actuation = actuation
        self.config = dataclasses.replace(config, on_command_loss=loss)
        self.physics_dt = dt
        self.decimation = int(actuation.decimation)
        self._emit: Event = on_event or (lambda level, message: None)
        self._joint_names = tuple(backend.joint_names)
        self._dt_ns = round(dt * 1e9)
        self._timeout_steps = max(1, round(config.command_timeout_s / dt))
        self._state_period_steps = max(1.0, 1.0 / (config.state_rate_hz * dt))
        self._delay_steps = command_delay_steps(config.command_delay_ms, dt)
        added = config.added_command_latency_ms
        if not (math.isfinite(added) and 0.0 <= added <= MAX_ADDED_COMMAND_LATENCY_MS):
            raise ValueError(
                f"added_command_latency_ms must be within 0-{MAX_ADDED_COMMAND_LATENCY_MS:g} ms, got {added}"
            )
        self._delay_steps += round(added * 1e-3 / dt)
        low, high = ACTUATOR_SCALE_RANGE
        for what in ("kp_scale", "torque_limit_scale"):
            value = getattr(config, what)
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"actuator_{what} must be within {low:g}-{high:g}, got {value}")
        if config.torque_limit_scale != 1.0:
            scale_limits = getattr(backend, "set_torque_limit_scale", None)
            if scale_limits is None:
                raise ValueError(f"the {type(backend).__name__} backend cannot scale torque limits; use 1.0")
            scale_limits(config.torque_limit_scale)
        self.sensors = SensorModel(config.sensors, dt)

        names = self._joint_names
        kp = actuation.in_order(actuation.kp, names) * config.kp_scale
        backend.set_gains(kp, actuation.in_order(actuation.kd, names))
        backend.set_command_delay(self._delay_steps)
        if any(config.payload_offset):
            self.set_payload(getattr(backend, "payload_kg", 0.0), config.payload_offset)

        self._steps = 0
        self._next_state_step = 0.0
        self._layout = contract.JointLayout(self._joint_names)
        self._last_targets: np.ndarray | None = None
        self._last_command_step: int | None = None
        self._last_reject_report: tuple[str, float] | None = None
        self.safe = SafeBehaviour.RESET_POSE
        self.safe_reason = ""
        self.last_rejection = ""
        self.counters = {"commands": 0, "rejected_commands": 0, "command_losses": 0, "resets": 0, "pushes": 0}
        self._reset_backend(None)
        self._set_safe(
            SafeBehaviour.RESET_POSE, "no joint_command yet: holding the reset pose (PD on the default pose)"
        )

    # ------------------------------------------------------------------ time
    @property
    def physics_steps(self) -> int:
        return self._steps

    @property
    def sim_time_ns(self) -> int:
        """Sim time in integer nanoseconds (exact stamps, no float drift)."""
        return self._steps * self._dt_ns

    @property
    def sim_time(self) -> float:
        return self._steps * self.physics_dt

    @property
    def command_delay_steps(self) -> int:
        return self._delay_steps

    @property
    def command_age_s(self) -> float | None:
        """Sim seconds since the last valid joint_command (None: none since start/reset)."""
        return None if self._last_command_step is None else (self._steps - self._last_command_step) * self.physics_dt

    @property
    def last_targets(self) -> np.ndarray | None:
        """The joint targets of the last valid joint_command (backend joint order), None before one."""
        return self._last_targets

    @property
    def safe_active(self) -> bool:
        return self.safe is not SafeBehaviour.NONE

    # ------------------------------------------------------------------ commands
    def command(self, names: Sequence[str], positions: Sequence[float]) -> bool:
        """Apply a joint_command (mapped by name). Returns False, counted and reported, if rejected."""
        try:
            targets = self._layout.take(names, positions)
        except ValueError as exc:
            return self._reject(str(exc))
        self.backend.set_targets(targets)
        self._last_targets = targets
        self.counters["commands"] += 1
        previous_age = self.command_age_s
        self._last_command_step = self._steps
        if self.safe is not SafeBehaviour.NONE:
            was = self.safe
            if was is SafeBehaviour.LIMP:
                self.backend.set_limp(False)
            if was is SafeBehaviour.RESET_POSE:
                message = "joint_command received: following it (was holding the reset pose)"
            else:
                message = f"joint_command resumed after {previous_age:.3f} s: following it (was {was.value})"
            self._set_safe(SafeBehaviour.NONE, "")
            self._emit("info", message)
        return True

    def _reject(self, problem: str) -> bool:
        self.counters["rejected_commands"] += 1
        self.last_rejection = problem
        last = self._last_reject_report
        if last is None or last[0] != problem or self.sim_time - last[1] >= self.REJECT_LOG_PERIOD_S:
            self._last_reject_report = (problem, self.sim_time)
            keeping = "following the previous command" if self.safe is SafeBehaviour.NONE else self.safe_reason
            self._emit(
                "error",
                f"joint_command rejected ({problem}); still {keeping} "
                f"({self.counters['rejected_commands']} rejected so far)",
            )
        return False

    # ------------------------------------------------------------------ stepping
    def step_physics(self, n: int = 1) -> None:
        """Advance ``n`` physics steps, entering the safe behaviour at the step the timeout expires."""
        remaining = int(n)
        record = self.sensors.latency_steps > 0  # late sensors need the state of every step
        while remaining > 0:
            self._check_command_age()
            chunk = 1 if record else remaining
            if self.safe is SafeBehaviour.NONE and self._last_command_step is not None:
                chunk = min(chunk, max(1, self._last_command_step + self._timeout_steps - self._steps))
            self.backend.step(chunk)
            self._steps += chunk
            remaining -= chunk
            if record:
                self.sensors.record(self._steps, self.backend.state())
        self._check_command_age()

    def advance_to(self, sim_time: float) -> int:
        """Step physics up to ``sim_time`` (whole steps); returns the number of steps taken."""
        n = math.floor((sim_time - self.sim_time) / self.physics_dt + 1e-6)
        if n > 0:
            self.step_physics(n)
        return max(n, 0)

    def lockstep_step(self) -> None:
        """One control period: exactly ``decimation`` physics steps (lockstep mode, after a command)."""
        self.step_physics(self.decimation)

    def state_due(self) -> bool:
        """Whether realtime mode should publish state now (at ``state_rate_hz`` of sim time); consumes it."""
        if self._steps < self._next_state_step:
            return False
        self._next_state_step += self._state_period_steps
        if self._next_state_step <= self._steps:  # fell behind (rate above the physics rate): no bursts
            self._next_state_step = self._steps + self._state_period_steps
        return True

    def state(self) -> RobotState:
        """The backend's state stamped with the bridge's monotonic sim time."""
        return dataclasses.replace(self.backend.state(), sim_time=self.sim_time)

    def sensed(self, state: RobotState | None = None) -> Sensed:
        """The current instant as the robot's sensors report it (the true state unless configured)."""
        return self.sensors.sense(self._steps, self.state() if state is None else state)

    def _check_command_age(self) -> None:
        if (
            self.safe is SafeBehaviour.NONE
            and self._last_command_step is not None
            and self._steps - self._last_command_step >= self._timeout_steps
        ):
            self._enter_command_loss()

    def _enter_command_loss(self) -> None:
        age = self.command_age_s or 0.0
        self.counters["command_losses"] += 1
        lost = f"{contract.COMMAND_LOSS} {age:.3f} s (timeout {self.config.command_timeout_s:g} s)"
        if self.config.on_command_loss is CommandLoss.LIMP:
            self.backend.set_limp(True)
            self._set_safe(SafeBehaviour.LIMP, f"{lost}: limp (damping only)")
        else:
            if self._last_targets is None:  # nothing commanded to keep: hold where the robot is
                self._last_targets = self.backend.state().q
                self.backend.set_targets(self._last_targets)
            self._set_safe(SafeBehaviour.HOLD, f"{lost}: holding the last targets")
        self._emit("warn", self.safe_reason)

    def _set_safe(self, behaviour: SafeBehaviour, reason: str) -> None:
        self.safe, self.safe_reason = behaviour, reason

    # ------------------------------------------------------------------ services
    def reset(self, pose: Mapping[str, float] | None = None) -> str:
        """Robot at rest in the default pose (joints in ``pose`` override it), holding it until a command."""
        self._reset_backend(pose)
        self.counters["resets"] += 1
        given = f" with {len(pose)} joints set" if pose else ""
        self._set_safe(SafeBehaviour.RESET_POSE, f"reset{given}: holding the reset pose until the next joint_command")
        self._emit("info", self.safe_reason)
        return self.safe_reason

    def _reset_backend(self, pose: Mapping[str, float] | None) -> None:
        joint_pos = self.actuation.default_pose()
        if pose:
            unknown = sorted(set(pose) - set(joint_pos))
            if unknown:
                raise ValueError(f"unknown joints in the reset pose: {', '.join(unknown)}")
            joint_pos.update({k: float(v) for k, v in pose.items()})
        self.backend.reset(joint_pos)  # also clears limp and sets the targets to the pose
        self.sensors.reset()
        self._last_targets = None
        self._last_command_step = None

    def push(self, delta_v_world: Sequence[float]) -> None:
        kick = np.asarray(delta_v_world, dtype=np.float64)
        if kick.shape != (3,) or not np.all(np.isfinite(kick)):
            raise ValueError(f"push velocity must be 3 finite values [vx, vy, vz] m/s, got {list(delta_v_world)}")
        self.backend.push(kick)
        self.counters["pushes"] += 1

    def set_friction(self, mu: float) -> None:
        self.backend.set_friction(float(mu))

    def set_payload(self, kg: float, offset: Sequence[float] | None = None) -> None:
        """Payload mass on the body, at its COM or ``offset`` m from it (body frame; MuJoCo only)."""
        offset = offset if offset is not None else self.config.payload_offset
        if any(offset):
            self.backend.set_payload(float(kg), offset)  # type: ignore[call-arg]
        else:
            self.backend.set_payload(float(kg))

    # ------------------------------------------------------------------ reporting
    def status(self) -> dict[str, object]:
        return {
            "sim_time": self.sim_time,
            "command_age_s": self.command_age_s,
            "safe_behaviour": self.safe.value,
            "safe_active": self.safe_active,
            "safe_reason": self.safe_reason,
            "last_rejection": self.last_rejection,
            "command_delay_steps": self._delay_steps,
            **self.counters,
        }


class RealtimePacer:
    """Wall-clock schedule for physics steps: sleeps to each deadline and says how many steps are due.

    Deadlines are absolute (start + k * period), so sleep overshoot does not accumulate into drift.
    A late wake-up steps the missed steps back to back; when more than ``max_catch_up`` are
    missed (a stall), the excess is dropped and counted: the sim then runs slower than real time
    rather than bursting.
    """

    def __init__(
        self,
        period_s: float,
        max_catch_up: int = 25,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not period_s > 0.0:
            raise ValueError(f"period must be > 0, got {period_s}")
        self.period = float(period_s)
        self.max_catch_up = int(max_catch_up)
        self._clock, self._sleep = clock, sleep
        self.period_jitter_s = Rolling(2000)  # |interval between wake-ups - period|
        self.dropped_steps = 0
        self.restart()

    def restart(self) -> None:
        self._t0 = self._clock()
        self._done = 0
        self._last_wake: float | None = None

    def wait(self) -> int:
        """Sleep until the next step is due; return how many steps are due now (>= 1)."""
        deadline = self._t0 + (self._done + 1) * self.period
        remaining = deadline - self._clock()
        if remaining > 0.0:
            self._sleep(remaining)
        wake = self._clock()
        if self._last_wake is not None:
            self.period_jitter_s.add(abs(wake - self._last_wake - self.period))
        self._last_wake = wake
        due = max(1, math.floor((wake - self._t0) / self.period) - self._done)
        if due > self.max_catch_up:
            self.dropped_steps += due - self.max_catch_up
            self._t0 += (due - self.max_catch_up) * self.period
            due = self.max_catch_up
        self._done += due
        return due


class LockstepAction(str, Enum):
    NOTHING = "nothing"
    PUBLISH = "publish"  # publish the current state again, physics unchanged
    STEP = "step"  # advance one control period, then publish


class LockstepGate:
    """Lockstep's protocol: exactly one published state awaits exactly one answer.

    Every joint_command advances one control period. A reset while the loop runs would add a
    second state in flight (the reset state *and* the one the policy is already answering), and
    the policy's commands would trail the sim by a period from then on; so a reset in a running
    loop drops the answer to the old state and publishes the reset state in its place. An idle
    policy gets the reset state at once. ``wait_s`` > 0: with no command for that long, advance
    anyway (sim time keeps moving while the policy node is idle); <= 0: wait forever.
    """

    def __init__(self, wait_s: float, answer_window_s: float = 0.1) -> None:
        self.wait_s = float(wait_s)
        self.answer_window_s = float(answer_window_s)
        self.stale_dropped = 0
        self._last_publish: float | None = None
        self._last_command: float | None = None
        self._awaiting = False
        self._reset_at: float | None = None

    @property
    def timer_period_s(self) -> float:
        """How often the node must call :meth:`timer` (restarted at every publish)."""
        return self.wait_s if self.wait_s > 0.0 else self.answer_window_s

    def published(self, now: float) -> None:
        self._last_publish = now
        self._awaiting = True

    def command(self, now: float) -> LockstepAction:
        self._last_command = now
        self._awaiting = False
        if self._reset_at is not None:
            self._reset_at = None
            self.stale_dropped += 1
            return LockstepAction.PUBLISH  # it answered a state from before the reset
        return LockstepAction.STEP

    def reset(self, now: float) -> LockstepAction:
        running = self._awaiting and self._last_command is not None and now - self._last_command < self.answer_window_s
        if running:
            self._reset_at = now
            return LockstepAction.NOTHING
        return LockstepAction.PUBLISH

    def due(self) -> float:
        """The monotonic time from which :meth:`timer` acts (inf: only a command or a reset will)."""
        if self._reset_at is not None:
            return self._reset_at + self.answer_window_s
        if self.wait_s > 0.0 and self._last_publish is not None:
            return self._last_publish + 0.9 * self.wait_s
        return math.inf

    def timer(self, now: float) -> LockstepAction:
        if self._reset_at is not None:
            if now - self._reset_at < self.answer_window_s:
                return LockstepAction.NOTHING
            self._reset_at = None  # the answer to the old state never came: publish the reset state
            return LockstepAction.PUBLISH
        since = math.inf if self._last_publish is None else now - self._last_publish
        if self.wait_s > 0.0 and since >= 0.9 * self.wait_s:
            return LockstepAction.STEP
        return LockstepAction.NOTHING
