"""The simulated robot's sensors: what the bridge publishes is the true state seen through them.

A real Spot's state estimate is noisy, biased, late and sometimes missing; a policy that only ever
saw the simulator's exact state has not been tested against any of that. Everything here is off by
default (the bridge then publishes the exact state) and is set by the bridge's ``sense_*``,
``imu_*``, ``velocity_*`` and ``fault_*`` parameters (config/sim_bridge.yaml).

- noise: uniform, additive, per published value, as Isaac Lab's ``uniform_noise`` observation
  noise (``n_min = -a``, ``n_max = a``) on the same quantities: base linear and angular velocity,
  joint positions and velocities, and projected gravity; the last as a random tilt of the published
  orientation by up to ``a`` rad about the body x and y axes (for small angles that moves
  projected gravity's x and y by up to ``a``, which is what the policy computes from it).
- IMU bias: a constant gyro bias (rad/s) and a constant roll/pitch error of the orientation.
- base-velocity drift: a constant bias plus a random walk (m/s per sqrt(s)) on the odometry's
  linear twist, the way a leg-odometry estimate wanders.
- latency: the state published at sim time t is the one of t - ``sense_latency_ms``.
- drops: each state instant is lost with ``sense_drop_probability`` (in lockstep the whole
  instant, so the policy skips that step and its last command stays in force), never more than
  :data:`MAX_CONSECUTIVE_DROPS` in a row: a longer gap is a stale input, which the policy node
  must fault on (the ``fault_stale_*`` parameters inject that on purpose).
- faults: one ``joint_states`` with a NaN position at ``fault_nan_at_s``; a topic that stops at
  ``fault_stale_at_s`` for ``fault_stale_duration_s`` (a stale input).

Random draws are keyed by (seed, physics step of the instant), never by how often something was
published, so a republished instant reads the same and runs are reproducible.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from spot_sim_bridge.core.backend import RobotState

MAX_SENSE_LATENCY_MS = 100.0
STALE_TOPICS = ("", "joint_states", "imu", "odom")
#: Two lost instants at 50 Hz are 40 ms, inside the policy node's 60 ms input timeout.
MAX_CONSECUTIVE_DROPS = 2
TOPICS = ("imu", "odom", "joint_states")


@dataclass(frozen=True)
class SensorConfig:
    seed: int = 0
    noise_base_lin_vel: float = 0.0  # m/s
    noise_base_ang_vel: float = 0.0  # rad/s
    noise_projected_gravity: float = 0.0  # rad of tilt, ~ projected gravity x/y
    noise_joint_pos: float = 0.0  # rad
    noise_joint_vel: float = 0.0  # rad/s
    imu_gyro_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)  # rad/s, body frame
    imu_tilt_bias_deg: tuple[float, float] = (0.0, 0.0)  # roll, pitch error of the orientation
    velocity_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)  # m/s, body frame
    velocity_drift: float = 0.0  # random walk of the velocity error, m/s per sqrt(s)
    latency_ms: float = 0.0
    drop_probability: float = 0.0
    fault_nan_at_s: float = -1.0  # < 0: never
    fault_stale_topic: str = ""
    fault_stale_at_s: float = -1.0
    fault_stale_duration_s: float = 0.0  # <= 0: until the end

    def __post_init__(self) -> None:
        amplitudes = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name.startswith("noise_")}
        for name, value in amplitudes.items():
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"sense_{name} is {value}; use a noise amplitude >= 0")
        if not 0.0 <= self.latency_ms <= MAX_SENSE_LATENCY_MS:
            raise ValueError(f"sense_latency_ms is {self.latency_ms}; use 0-{MAX_SENSE_LATENCY_MS:g} ms")
        if not 0.0 <= self.drop_probability < 1.0:
            raise ValueError(f"sense_drop_probability is {self.drop_probability}; use a probability in [0, 1)")
        if self.fault_stale_topic not in STALE_TOPICS:
            raise ValueError(
                f"fault_stale_topic is '{self.fault_stale_topic}'; use one of joint_states, imu, odom (or empty)"
            )
        if not (math.isfinite(self.velocity_drift) and self.velocity_drift >= 0.0):
            raise ValueError(f"velocity_drift is {self.velocity_drift}; use a random-walk rate >= 0")
        for name in ("imu_gyro_bias", "imu_tilt_bias_deg", "velocity_bias"):
            if not all(math.isfinite(v) for v in getattr(self, name)):
                raise ValueError(f"{name} must be finite numbers")

    @property
    def exact(self) -> bool:
        """Publishes the true state unchanged (the default)."""
        return self == SensorConfig(seed=self.seed)


@dataclass(frozen=True)
class Sensed:
    """One instant as the sensors report it, and which of its messages go out."""

    state: RobotState
    publish: frozenset[str]  # subset of TOPICS
    dropped: bool = False  # lost by sense_drop_probability (the whole instant)
    injected: str = ""  # a fault injected into this instant ("nan", "stale:<topic>")


def _small_rotation_wxyz(roll: float, pitch: float) -> np.ndarray:
    cr, sr, cp, sp = math.cos(roll / 2), math.sin(roll / 2), math.cos(pitch / 2), math.sin(pitch / 2)
    return np.array([cr * cp, sr * cp, cr * sp, -sr * sp])


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


class SensorModel:
    """Turns true states into sensed ones. Call :meth:`record` after every physics step while
    :attr:`latency_steps` > 0 (the core does), and :meth:`sense` for each published instant."""

    def __init__(self, config: SensorConfig, physics_dt: float) -> None:
        self.config = config
        self.physics_dt = float(physics_dt)
        self.latency_steps = round(config.latency_ms * 1e-3 / self.physics_dt)
        self._history: deque[tuple[int, RobotState]] = deque(maxlen=self.latency_steps + 2)
        self._drift = np.zeros(3)
        self._drift_step = 0
        self._nan_done_step: int | None = None
        self._drops: deque[tuple[int, bool]] = deque(maxlen=MAX_CONSECUTIVE_DROPS + 1)  # (step, dropped)
        self.counters = {"dropped_instants": 0, "nan_injected": 0, "stale_suppressed": 0}

    @property
    def exact(self) -> bool:
        return self.config.exact

    def record(self, step: int, state: RobotState) -> None:
        self._history.append((step, state))

    def reset(self) -> None:
        self._history.clear()

    def _delayed(self, step: int, state: RobotState) -> RobotState:
        if self.latency_steps <= 0 or not self._history:
            return state
        wanted = step - self.latency_steps
        for recorded_step, recorded in self._history:  # oldest first
            if recorded_step >= wanted:
                return dataclasses.replace(recorded, sim_time=state.sim_time)
        return state

    def _rng(self, step: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, step, stream])

    def sense(self, step: int, state: RobotState) -> Sensed:
        """The instant published at physics step ``step`` (its true state ``state``)."""
        c = self.config
        t = step * self.physics_dt
        if c.drop_probability > 0.0 and self._dropped(step):
            return Sensed(state, frozenset(), dropped=True)
        publish = set(TOPICS)
        injected = ""
        if c.fault_stale_topic and c.fault_stale_at_s >= 0.0 and t >= c.fault_stale_at_s - 1e-9:
            until = c.fault_stale_at_s + c.fault_stale_duration_s
            if c.fault_stale_duration_s <= 0.0 or t < until - 1e-9:
                publish.discard(c.fault_stale_topic)
                self.counters["stale_suppressed"] += 1
                injected = f"stale:{c.fault_stale_topic}"
        if c.exact:
            return Sensed(state, frozenset(publish), injected=injected)

        s = self._delayed(step, state)
        noise = self._rng(step, 2).uniform(-1.0, 1.0, size=3 + 3 + 2 + 12 + 12)
        lin = s.base_lin_vel_body + c.noise_base_lin_vel * noise[0:3] + np.asarray(c.velocity_bias)
        lin = lin + self._drift_at(step)
        ang = s.base_ang_vel_body + c.noise_base_ang_vel * noise[3:6] + np.asarray(c.imu_gyro_bias)
        roll = math.radians(c.imu_tilt_bias_deg[0]) + c.noise_projected_gravity * noise[6]
        pitch = math.radians(c.imu_tilt_bias_deg[1]) + c.noise_projected_gravity * noise[7]
        quat = s.base_quat
        if roll or pitch:
            quat = _quat_mul(quat, _small_rotation_wxyz(roll, pitch))
        q = s.q + c.noise_joint_pos * noise[8:20]
        dq = s.dq + c.noise_joint_vel * noise[20:32]
        if c.fault_nan_at_s >= 0.0 and t >= c.fault_nan_at_s - 1e-9 and self._nan_done_step in (None, step):
            q = q.copy()
            q[0] = math.nan
            self._nan_done_step = step
            self.counters["nan_injected"] += 1
            injected = "nan"
        sensed = dataclasses.replace(
            s, base_lin_vel_body=lin, base_ang_vel_body=ang, base_quat=quat, q=q, dq=dq, sim_time=state.sim_time
        )
        return Sensed(sensed, frozenset(publish), injected=injected)

    def _dropped(self, step: int) -> bool:
        """Whether the instant at ``step`` is lost (the same answer when it is asked again)."""
        for seen, dropped in self._drops:
            if seen == step:
                return dropped
        earlier = [d for s, d in self._drops if s < step][-MAX_CONSECUTIVE_DROPS:]
        run_full = len(earlier) == MAX_CONSECUTIVE_DROPS and all(earlier)
        dropped = not run_full and self._rng(step, 1).random() < self.config.drop_probability
        self._drops.append((step, dropped))
        self.counters["dropped_instants"] += dropped
        return dropped

    def _drift_at(self, step: int) -> np.ndarray:
        """The random-walk velocity error at ``step`` (advanced only when time moves forward)."""
        rate = self.config.velocity_drift
        if rate <= 0.0:
            return self._drift
        while self._drift_step < step:
            # One increment per 0.02 s of sim time (keyed by the step it ends at): the same walk
            # for any publish rate.
            block = max(1, round(0.02 / self.physics_dt))
            nxt = (self._drift_step // block + 1) * block
            if nxt > step:
                break
            self._drift = self._drift + rate * math.sqrt(block * self.physics_dt) * self._rng(nxt, 3).standard_normal(3)
            self._drift[2] = 0.0  # a planar estimate drifts in x and y
            self._drift_step = nxt
        return self._drift
