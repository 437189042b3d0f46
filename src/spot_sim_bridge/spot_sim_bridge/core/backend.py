"""The interface every simulator backend implements (``MujocoSpot``, ``IsaacSpot``).

The bridge node talks only to this interface, so swapping physics engines cannot change what the
policy node sees. No ROS imports here: the core is tested without a ROS graph. What a backend must
do to stand in for the robot is checked by ``test/test_backend_conformance.py``, one suite run
against every backend.

The interface is: reset; set gains and targets (a PD law the backend runs at physics rate, limp
for the safe behaviour, an optional whole-step command delay); step one physics step or a control
period's worth; read state. The rest are domain parameters (friction, payload, push, placing the
base) and two facts the conformance suite checks against (joint limits, determinism).

Conventions (the same as the topic contract and Isaac Lab's observations):
- joint arrays are in Isaac Lab articulation order (``contract.ISAAC_JOINT_ORDER``);
- world frame is z up; the body frame is x forward, y left, z up (REP-103);
- quaternions are (w, x, y, z), body-to-world.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from spot_policy.core import contract

#: Nominal standing pose of the Isaac Lab Spot config (SPOT.md); backends reset to it.
DEFAULT_JOINT_POS: dict[str, float] = {
    **{f"{leg}_hx": (0.1 if leg.endswith("l") else -0.1) for leg in contract.LEGS},
    **{f"{leg}_hy": (0.9 if leg.startswith("f") else 1.1) for leg in contract.LEGS},
    **{f"{leg}_kn": -1.5 for leg in contract.LEGS},
}


class BackendUnavailable(ValueError):
    """A backend that exists but cannot run on this machine (its simulator is not installed).

    A ``ValueError`` because it is a configuration problem of the ``backend`` parameter, reported
    as one line like an unknown backend name.
    """


#: Isaac Lab Spot actuator gains (both hip and knee groups), N*m/rad and N*m*s/rad.
ISAAC_KP = 60.0
ISAAC_KD = 1.5


def default_joint_pos_array(joint_pos: dict[str, float] | None = None) -> np.ndarray:
    """The default pose in Isaac order, with ``joint_pos`` overriding single joints by name."""
    pose = dict(DEFAULT_JOINT_POS)
    if joint_pos:
        unknown = sorted(set(joint_pos) - set(pose))
        if unknown:
            raise KeyError(f"unknown joints: {', '.join(unknown)}")
        pose.update(joint_pos)
    return np.array([pose[name] for name in contract.ISAAC_JOINT_ORDER], dtype=np.float64)


def as_joint_array(value: float | Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    """A scalar or 12 values as a fresh (12,) float array, finite and >= 0 (gains, limits)."""
    array = np.broadcast_to(np.asarray(value, dtype=np.float64), (len(contract.ISAAC_JOINT_ORDER),)).copy()
    if not np.all(np.isfinite(array)) or np.any(array < 0.0):
        raise ValueError(f"{what} must be finite and >= 0, got {array}")
    return array


def quat_to_matrix(quat_wxyz: np.ndarray) -> np.ndarray:
    """Body-to-world rotation matrix of a unit quaternion (w, x, y, z)."""
    w, x, y, z = (float(v) for v in quat_wxyz)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


#: An optional vector argument (``None``: leave that part as it is).
Vec = np.ndarray | None


class BackendBase:
    """What every backend shares: construction from a parameter mapping, its joint order."""

    _joint_names: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Any:
        """Build from a parameter mapping with the constructor's keyword names."""
        return cls(**dict(config))

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self._joint_names


@dataclass(frozen=True)
class RobotState:
    """One snapshot of the simulated robot, in the units and frames the topic contract uses."""

    sim_time: float  # s since reset
    joint_names: tuple[str, ...]  # Isaac order
    q: np.ndarray  # (12,) rad
    dq: np.ndarray  # (12,) rad/s
    tau: np.ndarray  # (12,) N*m applied during the last physics step (after limits)
    base_pos: np.ndarray  # (3,) world m
    base_quat: np.ndarray  # (4,) world wxyz, body-to-world
    base_lin_vel_body: np.ndarray  # (3,) m/s, body frame
    base_ang_vel_body: np.ndarray  # (3,) rad/s, body frame
    imu_lin_acc: np.ndarray  # (3,) m/s^2 body frame, proper acceleration: +9.81 z standing level

    @property
    def projected_gravity(self) -> np.ndarray:
        """Unit gravity (0, 0, -1) seen from the body: Isaac Lab's ``projected_gravity`` term."""
        return quat_to_matrix(self.base_quat).T @ np.array([0.0, 0.0, -1.0])


@runtime_checkable
class SimBackend(Protocol):
    """A physics engine holding one Spot, driven by joint position targets through a PD law.

    The PD law runs at physics rate inside the backend (as Isaac Lab's actuators do), so the
    caller only sets targets at its own rate and steps.
    """

    #: Whether two fresh instances fed the same calls give bit-identical states (lockstep replays).
    deterministic: bool

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Joint order of every array this backend takes or returns (Isaac order)."""
        ...

    @property
    def physics_dt(self) -> float:
        """Seconds per physics step."""
        ...

    def joint_limits(self) -> np.ndarray:
        """(12, 2) [lower, upper] position limits (rad) the simulated joints enforce, Isaac order."""
        ...

    def reset(self, joint_pos: dict[str, float] | None = None, base_height: float | None = None) -> None:
        """Put the robot at rest in ``joint_pos`` (default pose), feet on the ground, PD holding it."""
        ...

    def set_gains(self, kp: np.ndarray, kd: np.ndarray) -> None:
        """PD gains, scalar or (12,) in Isaac order; they come from the policy config."""
        ...

    def set_targets(self, q_target: np.ndarray) -> None:
        """Joint position targets (12,) in Isaac order, held until the next call."""
        ...

    def set_limp(self, on: bool) -> None:
        """Limp: zero stiffness, damping only; the safe behaviour when commands stop."""
        ...

    def set_command_delay(self, steps: int) -> None:
        """Apply each target ``steps`` physics steps after it is set (Isaac Lab's actuator delay)."""
        ...

    def step(self, n_physics_steps: int) -> None:
        """Advance the physics by ``n_physics_steps`` steps of ``physics_dt``."""
        ...

    def state(self) -> RobotState:
        """The current state; arrays are copies the caller may keep."""
        ...

    def push(self, delta_v_world: np.ndarray) -> None:
        """Add a velocity kick (3,) m/s in the world frame to the base."""
        ...

    def set_friction(self, mu: float) -> None:
        """Sliding friction coefficient between the robot and the ground."""
        ...

    def set_payload(self, kg: float) -> None:
        """Mass added to the body at its center of mass (replaces any earlier payload)."""
        ...

    def set_base_state(
        self, pos: Vec = None, quat: Vec = None, lin_vel_world: Vec = None, ang_vel_world: Vec = None
    ) -> None:
        """Place or throw the base (scenarios, conformance checks); ``None`` leaves that part as it is."""
        ...
