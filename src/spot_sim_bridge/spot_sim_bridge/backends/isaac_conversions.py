"""The Isaac Sim backend's pure parts: no ``isaacsim`` import, so they are unit-tested on any machine.

Isaac Sim cannot be installed everywhere this project is tested, so ``isaac_backend`` keeps only
the calls into Isaac Sim and leaves every computation to this module:

- joint mapping by name: the articulation's DOF order (read at run time) to the contract's
  Isaac Lab order, for the USD's names (``fl_hx``) or URDF-style ones (``front_left_hip_x``);
- quaternions: Isaac Sim's core API is scalar-first (w, x, y, z) like the contract; PhysX tensors
  and some USD types are (x, y, z, w): one converter, one normalizer;
- frames: world-frame root velocities to the body frame, and the IMU's proper acceleration
  (what an accelerometer reads: +g up when standing, zero in free fall) from two velocities;
- the explicit PD law Isaac Lab's Spot actuators run (kp/kd from the policy, hip 45 N*m, the knee's
  angle-dependent table, a whole-step command delay), the same law ``MujocoSpot`` applies;
- the drive settings that leave the PD law to Python (zero stiffness/damping) and effort ceilings;
- the base height at which Spot stands on its feet for a given pose (SPOT.md kinematics).

All joint arrays here are in contract order (``contract.ISAAC_JOINT_ORDER``) unless a name says
``dof`` (the articulation's order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from spot_policy.core import contract
from spot_sim_bridge.core.backend import ISAAC_KD, ISAAC_KP, as_joint_array, quat_to_matrix
from spot_sim_bridge.model import load_knee_torque_table

#: Standard gravity (m/s^2); Isaac Sim's World defaults to it along -z with stage units in meters.
GRAVITY = 9.81
GRAVITY_WORLD = np.array([0.0, 0.0, -GRAVITY])

# SPOT.md kinematics (body frame x forward, y left, z up), for the standing height.
_HIP_OFFSET = (0.29785, 0.055)  # body -> hx joint: (+ front, + left)
_UPPER_LEG_OFFSET_Y = 0.110945  # hx -> hy joint, + left
_KNEE_OFFSET = np.array([0.025, 0.0, -0.3205])  # hy -> kn joint
_FOOT_OFFSET = np.array([0.0, 0.0, -0.3365])  # kn -> foot sphere center
FOOT_RADIUS = 0.036

N_JOINTS = len(contract.ISAAC_JOINT_ORDER)
KNEES = np.array([name.endswith("_kn") for name in contract.ISAAC_JOINT_ORDER])


# --- joint names -----------------------------------------------------------------------------


def leg_dof_indices(dof_names: Sequence[str]) -> np.ndarray:
    """Index of each contract joint (Isaac order) in the articulation's DOF list, matched by name.

    Any naming the contract knows works (``fl_hx``, ``fl.hx``, ``front_left_hip_x``); DOFs that are
    not Spot's leg joints (an arm) are left out. ``ValueError`` names missing or doubled joints.
    """
    where: dict[str, int] = {}
    doubled: list[str] = []
    for index, name in enumerate(dof_names):
        joint = contract.canonical_joint_name(str(name))
        if joint is None:
            continue
        if joint in where:
            doubled.append(f"{joint} ({dof_names[where[joint]]!r} and {name!r})")
        where[joint] = index
    missing = [joint for joint in contract.ISAAC_JOINT_ORDER if joint not in where]
    if missing or doubled:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"given twice: {'; '.join(doubled)}"] if doubled else []
        )
        raise ValueError(
            f"the articulation's DOFs {list(dof_names)} are not Spot's 12 leg joints ({'; '.join(problems)})"
        )
    return np.array([where[joint] for joint in contract.ISAAC_JOINT_ORDER], dtype=np.intp)


def scatter_to_dofs(values: np.ndarray, dof_indices: np.ndarray, dof_values: np.ndarray) -> np.ndarray:
    """A copy of ``dof_values`` (articulation order) with the leg DOFs replaced by ``values`` (contract order)."""
    out = np.array(dof_values, dtype=np.float64, copy=True).reshape(-1)
    out[dof_indices] = np.asarray(values, dtype=np.float64).reshape(N_JOINTS)
    return out


def joint_limits_from_dofs(lower: np.ndarray, upper: np.ndarray, dof_indices: np.ndarray) -> np.ndarray:
    """(12, 2) [lower, upper] rad in contract order from per-DOF limit arrays (radians, as the API gives them)."""
    lo = np.asarray(lower, dtype=np.float64).reshape(-1)[dof_indices]
    hi = np.asarray(upper, dtype=np.float64).reshape(-1)[dof_indices]
    return np.stack([lo, hi], axis=1)


# --- quaternions and frames --------------------------------------------------------------------


def quat_xyzw_to_wxyz(quat_xyzw: Sequence[float]) -> np.ndarray:
    """Scalar-last (PhysX tensors, ``Gf.Quat`` imaginary-first layouts) to the contract's scalar-first."""
    x, y, z, w = (float(v) for v in quat_xyzw)
    return np.array([w, x, y, z])


def normalized_quat(quat_wxyz: Sequence[float]) -> np.ndarray:
    """Unit quaternion (w, x, y, z); the simulator's float32 output is a little off unit length."""
    quat = np.asarray(quat_wxyz, dtype=np.float64).reshape(4)
    norm = float(np.linalg.norm(quat))
    if not math.isfinite(norm) or norm < 1e-6:
        raise ValueError(f"not a rotation quaternion: {quat}")
    return quat / norm


def world_to_body(vector_world: Sequence[float], quat_wxyz: Sequence[float]) -> np.ndarray:
    """A world-frame vector (root velocity) in the body frame, the frame the observations use."""
    return quat_to_matrix(normalized_quat(quat_wxyz)).T @ np.asarray(vector_world, dtype=np.float64).reshape(3)


def proper_acceleration_body(
    vel_before_world: Sequence[float],
    vel_after_world: Sequence[float],
    dt: float,
    quat_wxyz: Sequence[float],
    gravity_world: np.ndarray = GRAVITY_WORLD,
) -> np.ndarray:
    """Accelerometer reading (m/s^2, body frame) over one step: (dv/dt - g) rotated into the body.

    An accelerometer measures acceleration minus gravity, so a robot at rest reads +9.81 along its
    up axis and a falling one reads zero: what ``sensor_msgs/Imu.linear_acceleration`` carries.
    """
    if not dt > 0.0:
        raise ValueError(f"dt must be > 0, got {dt}")
    accel_world = (np.asarray(vel_after_world, dtype=np.float64) - np.asarray(vel_before_world, dtype=np.float64)) / dt
    return world_to_body(accel_world - gravity_world, quat_wxyz)


# --- actuators ---------------------------------------------------------------------------------


class SpotPD:
    """Isaac Lab's explicit Spot actuators in Python: the torque for one physics step.

    ``tau = clip(kp * (target - q) - kd * dq, -limit(q), limit(q))`` with hips at 45 N*m and knees at
    the angle-dependent table, the target applied ``delay`` physics steps after it was set (Isaac
    Lab randomizes 0-4 steps). Limp: kp = 0, kd kept. The same law as ``MujocoSpot``, so the two
    backends differ only in their physics engines.
    """

    def __init__(
        self,
        kp: float | np.ndarray = ISAAC_KP,
        kd: float | np.ndarray = ISAAC_KD,
        hip_effort_limit: float = contract.HIP_EFFORT_LIMIT,
        knee_table: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self._knee_angles, self._knee_torques = knee_table if knee_table is not None else load_knee_torque_table()
        self._limit = np.where(KNEES, np.nan, float(hip_effort_limit))
        self._target = np.zeros(N_JOINTS)
        self._line = np.zeros((1, N_JOINTS))
        self._head = 0
        self.limp = False
        self.set_gains(kp, kd)

    @property
    def kp(self) -> np.ndarray:
        return self._kp.copy()

    @property
    def kd(self) -> np.ndarray:
        return self._kd.copy()

    @property
    def delay_steps(self) -> int:
        return self._line.shape[0] - 1

    @property
    def max_effort(self) -> np.ndarray:
        """The highest torque each joint can ever get (hips' limit, the table's peak for knees)."""
        return np.where(KNEES, float(self._knee_torques.max()), self._limit)

    def set_gains(self, kp: float | np.ndarray, kd: float | np.ndarray) -> None:
        self._kp, self._kd = as_joint_array(kp, "kp"), as_joint_array(kd, "kd")

    def set_target(self, q_target: np.ndarray) -> None:
        target = np.asarray(q_target, dtype=np.float64)
        if target.shape != (N_JOINTS,) or not np.all(np.isfinite(target)):
            raise ValueError(f"q_target must be 12 finite values in Isaac order, got {q_target!r}")
        self._target = target.copy()

    def set_delay(self, steps: int) -> None:
        if int(steps) != steps or steps < 0:
            raise ValueError(f"command delay must be a whole number of steps >= 0, got {steps}")
        self._line = np.tile(self._target, (int(steps) + 1, 1))
        self._head = 0

    def reset(self, q_target: np.ndarray) -> None:
        """Hold ``q_target`` from the next step on, with no stale delayed targets and not limp."""
        self.set_target(q_target)
        self._line[:] = self._target
        self._head = 0
        self.limp = False

    def effort_limit(self, q: np.ndarray) -> np.ndarray:
        """Per-joint torque limit at positions ``q`` (knees from the table, clamped at its ends)."""
        knee_limit = np.interp(np.asarray(q, dtype=np.float64), self._knee_angles, self._knee_torques)
        return np.where(KNEES, knee_limit, self._limit)

    def torque(self, q: np.ndarray, dq: np.ndarray) -> np.ndarray:
        """The torque for the coming physics step; advances the delay line by one step."""
        q, dq = np.asarray(q, dtype=np.float64), np.asarray(dq, dtype=np.float64)
        self._line[self._head] = self._target
        self._head = (self._head + 1) % self._line.shape[0]
        applied = self._line[self._head]  # set `delay` steps ago (this step, without delay)
        kp = 0.0 if self.limp else self._kp
        tau = kp * (applied - q) - self._kd * dq
        limit = self.effort_limit(q)
        return np.clip(tau, -limit, limit)


def drive_gains_for_explicit_pd(
    dof_stiffness: np.ndarray, dof_damping: np.ndarray, dof_indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-DOF drive stiffness and damping with the leg DOFs at zero: PhysX must not add its own PD.

    Isaac Lab does the same for explicit actuators; other DOFs (an arm) keep their drives.
    Returns ``(stiffness, damping)`` in articulation order.
    """
    stiffness = np.array(dof_stiffness, dtype=np.float64, copy=True).reshape(-1)
    damping = np.array(dof_damping, dtype=np.float64, copy=True).reshape(-1)
    stiffness[dof_indices] = 0.0
    damping[dof_indices] = 0.0
    return stiffness, damping


# --- domain parameters -------------------------------------------------------------------------


def checked_friction(mu: float) -> float:
    if not math.isfinite(mu) or mu < 0.0:
        raise ValueError(f"friction must be finite and >= 0, got {mu}")
    return float(mu)


def body_mass_with_payload(base_mass: float, payload_kg: float) -> float:
    """Body mass with a payload at its center of mass (replacing any earlier payload)."""
    mass = float(base_mass) + float(payload_kg)
    if not math.isfinite(mass) or mass <= 0.0:
        raise ValueError(f"payload {payload_kg} kg leaves a body mass of {mass} kg")
    return mass


# --- placing the robot -------------------------------------------------------------------------


def _rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def foot_centers_body(q: np.ndarray) -> np.ndarray:
    """(4, 3) foot sphere centers in the body frame, legs fl, fr, hl, hr, for joints ``q`` (Isaac order)."""
    pose = dict(zip(contract.ISAAC_JOINT_ORDER, np.asarray(q, dtype=np.float64).reshape(N_JOINTS), strict=True))
    feet = []
    for leg in contract.LEGS:
        front = 1.0 if leg.startswith("f") else -1.0
        left = 1.0 if leg.endswith("l") else -1.0
        hip_x = _rot_x(pose[f"{leg}_hx"])
        upper = hip_x @ _rot_y(pose[f"{leg}_hy"])
        lower = upper @ _rot_y(pose[f"{leg}_kn"])
        position = np.array([front * _HIP_OFFSET[0], left * _HIP_OFFSET[1], 0.0])
        position = position + hip_x @ np.array([0.0, left * _UPPER_LEG_OFFSET_Y, 0.0])
        position = position + upper @ _KNEE_OFFSET
        feet.append(position + lower @ _FOOT_OFFSET)
    return np.array(feet)


def standing_base_height(q: np.ndarray) -> float:
    """Base height (m) at which the lowest foot of a level Spot in pose ``q`` just touches z = 0."""
    return float(-foot_centers_body(q)[:, 2].min() + FOOT_RADIUS)
