"""MuJoCo backend: Spot on a flat floor, driven like Isaac Lab drives it.

The PD law runs here in Python at every physics step, as Isaac Lab's explicit actuators do:
``tau = kp * (q_target - q) - kd * dq``, hips clamped to +-45 N*m, knees to the angle-dependent
limit of ``model/spot_knee_torque_limits.csv``, targets optionally delayed by whole physics steps.
Torques reach MuJoCo through ``qfrc_applied``; the model has no actuators of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# A headless machine has no display for MuJoCo's default (GLFW) context; OSMesa renders anywhere.
# Must be decided before mujoco is imported; an explicit MUJOCO_GL always wins.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "osmesa"

import mujoco

from spot_policy.core import contract
from spot_sim_bridge.core.backend import (
    ISAAC_KD,
    ISAAC_KP,
    BackendBase,
    RobotState,
    Vec,
    as_joint_array,
    default_joint_pos_array,
)
from spot_sim_bridge.core.terrain import TerrainSpec
from spot_sim_bridge.model import SPOT_MJCF, load_knee_torque_table

_BASE_JOINT = "base"
_BASE_BODY = "base_link"
_IMU_ACCELEROMETER = "imu_acc"
_FLOOR = "floor"
_TERRAIN = "terrain"


def load_model(model_path: str | Path | None, terrain: TerrainSpec | None) -> mujoco.MjModel:
    """The Spot model, on flat ground or on ``terrain`` (a height field that replaces the floor plane)."""
    path = str(model_path or SPOT_MJCF)
    if terrain is None or terrain.flat:
        return mujoco.MjModel.from_xml_path(path)
    spec = mujoco.MjSpec.from_file(path)
    heights = terrain.heights()
    low, high = float(heights.min()), float(heights.max())
    span = max(high - low, 1e-3)
    nrow, ncol = heights.shape
    field = spec.add_hfield()
    field.name = _TERRAIN
    field.nrow, field.ncol = nrow, ncol
    half_x = (terrain.x_max_m - terrain.x_min_m) / 2
    field.size = [half_x, terrain.half_width_m, span, 0.2]
    field.userdata = ((heights - low) / span).ravel().tolist()
    floor = spec.geom(_FLOOR)
    ground = spec.worldbody.add_geom()
    ground.name = _TERRAIN
    ground.type = mujoco.mjtGeom.mjGEOM_HFIELD
    ground.hfieldname = _TERRAIN
    ground.pos = [terrain.x_min_m + half_x, 0.0, low]
    ground.contype, ground.conaffinity = 1, 1
    ground.material = floor.material
    ground.friction = floor.friction
    # The plane stays for the look beyond the field's edge, a little below it and without contacts.
    floor.contype, floor.conaffinity = 0, 0
    floor.pos = [0.0, 0.0, low - 0.01]
    return spec.compile()


class MujocoSpot(BackendBase):
    """Spot in MuJoCo behind the :class:`~spot_sim_bridge.core.backend.SimBackend` interface."""

    #: MuJoCo on one machine: the same calls on fresh instances give bit-identical states.
    deterministic = True

    def __init__(
        self,
        *,
        physics_dt: float = 0.002,
        kp: float | np.ndarray = ISAAC_KP,
        kd: float | np.ndarray = ISAAC_KD,
        friction: float = 0.8,
        payload_kg: float = 0.0,
        command_delay_steps: int = 0,
        model_path: str | Path | None = None,
        terrain: TerrainSpec | None = None,
        torque_limit_scale: float = 1.0,
    ) -> None:
        self.terrain = terrain or TerrainSpec()
        self._model = load_model(model_path, self.terrain)
        if physics_dt <= 0.0:
            raise ValueError(f"physics_dt must be > 0, got {physics_dt}")
        self._model.opt.timestep = physics_dt
        self._data = mujoco.MjData(self._model)
        model = self._model

        # The hot loop works in the model's own joint order on views of qpos/qvel/qfrc_applied;
        # conversion to and from Isaac order happens only at the API boundary.
        self._joint_names: tuple[str, ...] = contract.ISAAC_JOINT_ORDER
        joint_ids = np.array([model.joint(name).id for name in self._joint_names])
        dof_adr = model.jnt_dofadr[joint_ids]
        self._isaac_to_model = np.argsort(dof_adr)  # model-order array = isaac_array[isaac_to_model]
        self._model_to_isaac = np.argsort(self._isaac_to_model)  # isaac array = model_array[model_to_isaac]
        qpos_first, dof_first = self._contiguous_leg_joints(model, joint_ids[self._isaac_to_model])
        n = len(self._joint_names)
        self._q_view = self._data.qpos[qpos_first : qpos_first + n]
        self._dq_view = self._data.qvel[dof_first : dof_first + n]
        self._tau_view = self._data.qfrc_applied[dof_first : dof_first + n]
        base_joint = model.joint(_BASE_JOINT)
        if base_joint.type[0] != mujoco.mjtJoint.mjJNT_FREE:
            raise ValueError(f"joint {_BASE_JOINT!r} must be a freejoint")
        self._base_qpos = int(base_joint.qposadr[0])
        self._base_dof = int(base_joint.dofadr[0])
        self._base_body = model.body(_BASE_BODY).id
        self._base_mass0 = float(model.body_mass[self._base_body])
        accelerometer = model.sensor(_IMU_ACCELEROMETER)
        self._acc_adr = int(accelerometer.adr[0])

        # Geoms that touch anything: friction applies to them (MuJoCo combines a pair by max).
        self._contact_geoms = np.flatnonzero((model.geom_contype != 0) | (model.geom_conaffinity != 0))
        robot_bodies = {b for b in range(model.nbody) if model.body_rootid[b] == self._base_body}
        self._robot_collision_geoms = np.array(
            [g for g in self._contact_geoms if model.geom_bodyid[g] in robot_bodies], dtype=np.intp
        )

        self._knee_angles, self._knee_torques = load_knee_torque_table()
        model_order_names = [self._joint_names[i] for i in self._isaac_to_model]
        self._knee_slots = np.array(
            [i for i, name in enumerate(model_order_names) if name.endswith("_kn")], dtype=np.intp
        )

        # Work buffers of the hot loop (model order), allocated once.
        self._torque_scale = 1.0
        self._effort_limit = np.full(n, contract.HIP_EFFORT_LIMIT)
        self._neg_limit = -self._effort_limit
        self.set_torque_limit_scale(torque_limit_scale)
        self._damping_tau = np.zeros(n)
        self._latest_target = np.zeros(n)
        self._zero_kp = np.zeros(n)
        self._rot = np.zeros(9)

        self._limp = False
        self.set_gains(kp, kd)
        self._delay_line = np.zeros((1, n))
        self._delay_head = 0
        self._renderer: mujoco.Renderer | None = None

        self.set_friction(friction)
        self.set_payload(payload_kg)
        self.set_command_delay(command_delay_steps)
        self.reset()

    # --- SimBackend --------------------------------------------------------------------------

    @property
    def physics_dt(self) -> float:
        return float(self._model.opt.timestep)

    def joint_limits(self) -> np.ndarray:
        """The hinges' ranges from the model, (12, 2) rad in Isaac order."""
        return np.array([self._model.joint(name).range for name in self._joint_names], dtype=np.float64)

    def reset(self, joint_pos: dict[str, float] | None = None, base_height: float | None = None) -> None:
        """At rest in ``joint_pos`` (default pose), level, lowest point on the floor, PD holding it."""
        model, data = self._model, self._data
        mujoco.mj_resetData(model, data)
        pose = default_joint_pos_array(joint_pos)
        self._q_view[:] = pose[self._isaac_to_model]
        b = self._base_qpos
        data.qpos[b : b + 3] = 0.0
        data.qpos[b + 3 : b + 7] = (1.0, 0.0, 0.0, 0.0)
        data.qpos[b + 2] = self._touchdown_height() if base_height is None else float(base_height)
        mujoco.mj_forward(model, data)

        self._latest_target[:] = pose[self._isaac_to_model]
        self._delay_line[:] = self._latest_target
        self._delay_head = 0
        self.set_limp(False)

    def set_gains(self, kp: float | np.ndarray, kd: float | np.ndarray) -> None:
        self._kp = as_joint_array(kp, "kp")[self._isaac_to_model]
        self._kd = as_joint_array(kd, "kd")[self._isaac_to_model]
        self._kp_active = self._zero_kp if self._limp else self._kp

    def set_targets(self, q_target: np.ndarray) -> None:
        target = np.asarray(q_target, dtype=np.float64)
        if target.shape != self._latest_target.shape or not np.all(np.isfinite(target)):
            raise ValueError(f"q_target must be 12 finite values in Isaac order, got {target!r}")
        self._latest_target[:] = target[self._isaac_to_model]

    def set_limp(self, on: bool) -> None:
        self._limp = bool(on)
        self._kp_active = self._zero_kp if self._limp else self._kp

    def step(self, n_physics_steps: int = 1) -> None:
        model, data, apply_pd, mj_step = self._model, self._data, self._apply_pd, mujoco.mj_step
        for _ in range(int(n_physics_steps)):
            apply_pd()
            mj_step(model, data)

    def state(self) -> RobotState:
        """Read from qpos/qvel (current after the step), not from position sensors (one step old)."""
        data = self._data
        b, v = self._base_qpos, self._base_dof
        quat = data.qpos[b + 3 : b + 7].copy()
        mujoco.mju_quat2Mat(self._rot, quat)
        world_to_body = self._rot.reshape(3, 3).T
        # Freejoint qvel: linear part in the world frame, angular part in the body frame.
        return RobotState(
            sim_time=float(data.time),
            joint_names=self._joint_names,
            q=self._q_view[self._model_to_isaac],
            dq=self._dq_view[self._model_to_isaac],
            tau=self._tau_view[self._model_to_isaac],
            base_pos=data.qpos[b : b + 3].copy(),
            base_quat=quat,
            base_lin_vel_body=world_to_body @ data.qvel[v : v + 3],
            base_ang_vel_body=data.qvel[v + 3 : v + 6].copy(),
            imu_lin_acc=data.sensordata[self._acc_adr : self._acc_adr + 3].copy(),
        )

    def push(self, delta_v_world: np.ndarray) -> None:
        kick = np.asarray(delta_v_world, dtype=np.float64).reshape(3)
        self._data.qvel[self._base_dof : self._base_dof + 3] += kick

    def set_friction(self, mu: float) -> None:
        if not np.isfinite(mu) or mu < 0.0:
            raise ValueError(f"friction must be finite and >= 0, got {mu}")
        self._model.geom_friction[self._contact_geoms, 0] = mu

    def set_payload(self, kg: float, offset: Vec = None) -> None:
        """A point mass at the body COM, or ``offset`` (m, body frame) from it: body mass grows, its
        COM moves toward the payload and its inertia gains the point mass's (parallel axes)."""
        mass = self._base_mass0 + float(kg)
        if not np.isfinite(mass) or mass <= 0.0:
            raise ValueError(f"payload {kg} kg leaves a body mass of {mass} kg")
        at = np.zeros(3) if offset is None else np.asarray(offset, dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(at)) or np.any(np.abs(at) > 0.5):
            raise ValueError(f"payload offset {list(at)} m must be finite and within 0.5 m of the body's COM")
        model, body = self._model, self._base_body
        if not hasattr(self, "_base_com0"):
            self._base_com0 = model.body_ipos[body].copy()
            self._base_inertia0 = model.body_inertia[body].copy()
        shift = float(kg) * at / mass  # the new COM, relative to the old one
        d_body, d_load = -shift, at - shift
        inertia = self._base_inertia0.copy()
        for m, d in ((self._base_mass0, d_body), (float(kg), d_load)):
            inertia += m * (np.dot(d, d) - d * d)  # diagonal of the parallel-axis term
        model.body_ipos[body] = self._base_com0 + shift
        model.body_inertia[body] = inertia
        model.body_mass[body] = mass
        self.payload_kg = float(kg)
        # mj_setConst recomputes derived masses from qpos0 and overwrites the state: keep it.
        data = self._data
        saved = (data.time, data.qpos.copy(), data.qvel.copy(), data.qacc_warmstart.copy())
        mujoco.mj_setConst(self._model, data)
        data.time, data.qpos[:], data.qvel[:], data.qacc_warmstart[:] = saved
        mujoco.mj_forward(self._model, data)

    # --- MuJoCo extras -----------------------------------------------------------------------

    @property
    def mj_model(self) -> mujoco.MjModel:
        return self._model

    @property
    def mj_data(self) -> mujoco.MjData:
        return self._data

    @property
    def total_mass(self) -> float:
        return float(self._model.body_subtreemass[self._base_body])

    @property
    def torque_limit_scale(self) -> float:
        return self._torque_scale

    def set_torque_limit_scale(self, scale: float) -> None:
        """Scale the hips' 45 N*m and the knees' angle-dependent limits (a weaker or stronger robot)."""
        if not np.isfinite(scale) or not 0.1 <= scale <= 3.0:
            raise ValueError(f"torque limit scale must be within 0.1-3.0, got {scale}")
        self._torque_scale = float(scale)
        self._effort_limit[:] = contract.HIP_EFFORT_LIMIT * self._torque_scale
        self._neg_limit[:] = -self._effort_limit

    @property
    def command_delay_steps(self) -> int:
        return self._delay_line.shape[0] - 1

    def set_command_delay(self, steps: int) -> None:
        """A target set now is applied ``steps`` physics steps later (Isaac Lab: 0-4 at 500 Hz)."""
        if int(steps) != steps or steps < 0:
            raise ValueError(f"command delay must be a whole number of steps >= 0, got {steps}")
        self._delay_line = np.tile(self._latest_target, (int(steps) + 1, 1))
        self._delay_head = 0

    def set_base_state(
        self, pos: Vec = None, quat: Vec = None, lin_vel_world: Vec = None, ang_vel_world: Vec = None
    ) -> None:
        """Place or throw the base (scenarios and tests); velocities given in the world frame."""
        data = self._data
        b, v = self._base_qpos, self._base_dof
        if pos is not None:
            data.qpos[b : b + 3] = pos
        if quat is not None:
            q = np.asarray(quat, dtype=np.float64)
            data.qpos[b + 3 : b + 7] = q / np.linalg.norm(q)
        if lin_vel_world is not None:
            data.qvel[v : v + 3] = lin_vel_world
        if ang_vel_world is not None:
            mujoco.mju_quat2Mat(self._rot, data.qpos[b + 3 : b + 7])
            data.qvel[v + 3 : v + 6] = self._rot.reshape(3, 3).T @ np.asarray(ang_vel_world, dtype=np.float64)
        mujoco.mj_forward(self._model, data)

    def render(self, width: int = 640, height: int = 480, camera: str = "track") -> np.ndarray:
        """An RGB frame (height, width, 3) uint8; the renderer (and its GL context) is made on first use."""
        if self._renderer is None or (self._renderer.width, self._renderer.height) != (width, height):
            self.close()
            self._renderer = mujoco.Renderer(self._model, height=height, width=width)
        self._renderer.update_scene(self._data, camera=camera)
        return self._renderer.render()

    def close(self) -> None:
        """Release the renderer's GL context, if one was made."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # --- internals ---------------------------------------------------------------------------

    def _apply_pd(self) -> None:
        """One physics step of the PD law, written straight into qfrc_applied (model order)."""
        line = self._delay_line
        line[self._delay_head] = self._latest_target
        self._delay_head = (self._delay_head + 1) % line.shape[0]
        applied_target = line[self._delay_head]  # written `delay` steps ago (now, if no delay)

        q, tau, limit = self._q_view, self._tau_view, self._effort_limit
        np.subtract(applied_target, q, out=tau)
        tau *= self._kp_active
        np.multiply(self._kd, self._dq_view, out=self._damping_tau)
        tau -= self._damping_tau

        knees = self._knee_slots
        knee_limit = np.interp(q[knees], self._knee_angles, self._knee_torques)
        if self._torque_scale != 1.0:
            knee_limit *= self._torque_scale
        limit[knees] = knee_limit
        self._neg_limit[knees] = -knee_limit
        np.minimum(tau, limit, out=tau)
        np.maximum(tau, self._neg_limit, out=tau)

    @staticmethod
    def _contiguous_leg_joints(model: mujoco.MjModel, joint_ids: np.ndarray) -> tuple[int, int]:
        """First qpos and dof address of the 12 leg hinges, which must be consecutive (views)."""
        qpos_adr, dof_adr = model.jnt_qposadr[joint_ids], model.jnt_dofadr[joint_ids]
        span = np.arange(len(joint_ids))
        hinges = np.all(model.jnt_type[joint_ids] == mujoco.mjtJoint.mjJNT_HINGE)
        if not hinges or np.any(qpos_adr != qpos_adr[0] + span) or np.any(dof_adr != dof_adr[0] + span):
            raise ValueError("the 12 leg joints must be hinges with consecutive qpos/dof addresses")
        return int(qpos_adr[0]), int(dof_adr[0])

    def _touchdown_height(self) -> float:
        """Base height at which the lowest robot collision geom just touches z = 0 (pose in qpos)."""
        model, data = self._model, self._data
        b = self._base_qpos
        data.qpos[b + 2] = 0.0
        mujoco.mj_kinematics(model, data)
        lowest = np.inf
        for g in self._robot_collision_geoms:
            center_z = data.geom_xpos[g, 2]
            axes_z = data.geom_xmat[g].reshape(3, 3)[2]  # z components of the geom's local axes
            size = model.geom_size[g]
            kind = model.geom_type[g]
            if kind == mujoco.mjtGeom.mjGEOM_SPHERE:
                bottom = center_z - size[0]
            elif kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
                bottom = center_z - abs(axes_z[2]) * size[1] - size[0]
            elif kind == mujoco.mjtGeom.mjGEOM_BOX:
                bottom = center_z - float(np.abs(axes_z) @ size)
            else:
                bottom = center_z - model.geom_rbound[g]
            lowest = min(lowest, bottom)
        return float(-lowest)
