"""Isaac Lab's Spot flat velocity task (``Isaac-Velocity-Flat-Spot-v0``) in MJX, for brax PPO.

The policy sees exactly what the deployed policy sees (``shared/facts/ISAACLAB.md``):

- observation (48, in this order): base linear velocity (body frame), base angular velocity
  (body frame), projected gravity, command (vx, vy, wz), joint position minus default, joint
  velocity, last raw action; joint arrays in Isaac Lab articulation order, mapped to the MJCF
  joints by name;
- action: target = default + 0.2 * raw action (articulation order), clipped to the joint limits
  as ``spot_policy.core.controller`` clips it, held for 10 physics steps of 2 ms;
- actuators: the PD law of ``spot_sim_bridge.backends.mujoco`` evaluated at every physics step,
  kp 60, kd 1.5, hips clamped to +-45 N*m, knees to the angle-dependent limit of
  ``spot_knee_torque_limits.csv``, applied through ``qfrc_applied``, the target delayed by
  0-4 physics steps.

The model is ``src/spot_sim_bridge/spot_sim_bridge/model/spot.xml``, the file the simulator bridge
loads. What this module changes after loading, and why, is in :func:`load_model`.

Auto-reset happens inside :meth:`SpotFlatEnv.step` (a terminated or timed-out env starts a fresh
episode with new randomness), so brax's own episode/auto-reset wrappers are not used: theirs
restart from one stored state and keep the old episode's ``info`` (commands, air times, last
action). ``info['truncation']`` marks time-outs for brax PPO's bootstrap masking.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from brax.envs.base import Env, State
from mujoco import mjx
from spot_task import (
    ACTION_SCALE,
    BODY_HALF_SIZE,
    DEFAULT_POSE,
    EPISODE_METRICS,
    FOOT_RADIUS,
    HIP_EFFORT_LIMIT,
    JOINTS,
    KD,
    KP,
    LEGS,
    LOWER_LEG_LENGTH,
    LOWER_LEG_RADIUS,
    REWARD_WEIGHTS,
    SPOT_XML,
    UPPER_LEG_RADIUS,
    EnvConfig,
    contract,
    load_knee_table,
)


def load_model(cfg: EnvConfig) -> mujoco.MjModel:
    """spot.xml as the bridge loads it, with what MJX needs changed (measurements in TRAINING.md).

    - Contact solver: spot.xml asks for elliptic cones with impratio 100 and Newton 100/50
      iterations. MJX runs a fixed iteration budget on the GPU (a line search always takes all its
      steps), and with elliptic cones it stays close to the CPU solution only from about 8 Newton x
      30 line-search steps (``check_parity.py``: 2/6, 4/20 and 6/10 let the robot collapse), which
      costs 2.5x the throughput of pyramidal cones. The shipped policy trained with
      ``cfg.cone``/``cfg.impratio``/``cfg.solver_iterations``/``cfg.solver_ls_iterations`` =
      pyramidal/1/4/8 and is evaluated in the CPU bridge with the file's elliptic cones.
    - Sensors off: nothing here reads them (the accelerometer alone costs a second RNE pass).
    - ``foot_contacts_only``: the body box and leg capsules stop colliding; their ground contact is
      what Isaac Lab's task terminates on, and this env terminates geometrically when they reach
      the ground (:meth:`SpotFlatEnv._illegal_contact`), so the walking dynamics keep the CPU
      bridge's contacts (feet on the floor) at a sixth of the contact rows.
    """
    model = mujoco.MjModel.from_xml_path(str(SPOT_XML))
    model.opt.timestep = cfg.physics_dt
    model.opt.iterations = cfg.solver_iterations
    model.opt.ls_iterations = cfg.solver_ls_iterations
    cones = {"elliptic": mujoco.mjtCone.mjCONE_ELLIPTIC, "pyramidal": mujoco.mjtCone.mjCONE_PYRAMIDAL}
    model.opt.cone = cones[cfg.cone]
    model.opt.impratio = cfg.impratio
    model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_SENSOR
    if cfg.foot_contacts_only:
        keep = {model.geom("floor").id} | {model.geom(f"{leg}_foot").id for leg in LEGS}
        for g in range(model.ngeom):
            if g not in keep:
                model.geom_contype[g] = 0
                model.geom_conaffinity[g] = 0
    return model


def _quat_to_mat(q: jax.Array) -> jax.Array:
    """Body-to-world rotation of a unit quaternion (w, x, y, z)."""
    w, x, y, z = q[0], q[1], q[2], q[3]
    return jnp.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


class SpotFlatEnv(Env):
    """One Spot on a flat floor; brax vmaps it (and the randomized models) over the envs."""

    def __init__(self, cfg: EnvConfig | None = None, eval_mode: bool = False) -> None:
        cfg = cfg or EnvConfig()
        self.cfg = cfg
        self.eval_mode = eval_mode  # fixed commands (set by reset_with_command), no pushes, no noise
        model = load_model(cfg)
        self.mj_model = model
        self.sys = mjx.put_model(model)

        self._qadr = np.array([model.joint(j).qposadr[0] for j in JOINTS])
        self._dadr = np.array([model.joint(j).dofadr[0] for j in JOINTS])
        self._is_knee = np.array([j.endswith("_kn") for j in JOINTS])
        self._is_hip = ~self._is_knee
        self._default = np.array([DEFAULT_POSE[j] for j in JOINTS], dtype=np.float32)
        limits = np.array([contract.joint_limits(j) for j in JOINTS], dtype=np.float32)
        self._lower, self._upper = limits[:, 0], limits[:, 1]
        angles, torques = load_knee_table()
        self._knee_angles = angles.astype(np.float32)
        self._knee_torques = torques.astype(np.float32)

        base = model.joint("base")
        self._base_q = int(base.qposadr[0])
        self._base_v = int(base.dofadr[0])
        self._base_body = model.body("base_link").id
        self._foot_geoms = np.array([model.geom(f"{leg}_foot").id for leg in LEGS])
        self._floor_geom = model.geom("floor").id
        self._lleg_bodies = np.array([model.body(f"{leg}_lleg").id for leg in LEGS])
        self._uleg_bodies = np.array([model.body(f"{leg}_uleg").id for leg in LEGS])
        self._contact_geoms = np.flatnonzero((model.geom_contype != 0) | (model.geom_conaffinity != 0))
        self._base_mass0 = float(model.body_mass[self._base_body])

        # Constraint row of each contact's normal force (static in MJX; elliptic cones: row 0).
        self._contact_efc = np.asarray(mjx.make_data(model)._impl.contact.efc_address)

        # Resting pose: feet touching the floor (the CPU backend's touchdown height).
        mj_data = mujoco.MjData(model)
        mj_data.qpos[self._qadr] = self._default
        mj_data.qpos[self._base_q + 3 : self._base_q + 7] = (1.0, 0.0, 0.0, 0.0)
        mj_data.qpos[self._base_q + 2] = 0.0
        mujoco.mj_kinematics(model, mj_data)
        self.stand_height = float(-(mj_data.geom_xpos[self._foot_geoms, 2].min() - FOOT_RADIUS))
        self._qpos0 = np.array(mj_data.qpos, dtype=np.float32)
        self._qpos0[self._base_q + 2] = self.stand_height

        self._foot_pairs_sync = ((0, 3), (1, 2))  # (fl, hr), (fr, hl): trot, as Isaac Lab's GaitReward

    # --- brax Env interface ------------------------------------------------------------------

    @property
    def observation_size(self) -> Mapping[str, tuple[int, ...]]:
        return {"state": (48,), "privileged_state": (48 + 4 + 4 + 3,)}

    @property
    def action_size(self) -> int:
        return len(JOINTS)

    @property
    def backend(self) -> str:
        return "mjx"

    def reset(self, rng: jax.Array) -> State:
        """A fresh episode; the first reset of training starts at a random step of the episode."""
        rng, key = jax.random.split(rng)
        state = self._fresh_state(key)
        if self.cfg.random_initial_episode_step and not self.eval_mode:
            rng, key = jax.random.split(rng)
            steps = jax.random.randint(key, (), 0, self.cfg.episode_steps)
            state.info["steps"] = steps
        return state

    def reset_with_command(self, rng: jax.Array, command: jax.Array) -> State:
        """Eval: an episode from rest in the default pose with a fixed command."""
        state = self._fresh_state(rng, command=command, at_rest=True)
        return state

    def step(self, state: State, action: jax.Array) -> State:
        cfg, info = self.cfg, dict(state.info)
        data: mjx.Data = state.pipeline_state
        rng, k_push, k_cmd, k_noise, k_reset = jax.random.split(info["rng"], 5)

        # Push: set the base's planar velocity change (Isaac Lab's push_by_setting_velocity).
        push_due = info["push_countdown"] <= 0
        kick = jax.random.uniform(k_push, (2,), minval=-cfg.push_velocity, maxval=cfg.push_velocity)
        kick = jnp.where(push_due & (not self.eval_mode), kick, 0.0)
        qvel = data.qvel.at[self._base_v : self._base_v + 2].add(kick)
        data = data.replace(qvel=qvel)
        push_interval = self._push_interval(k_push)
        info["push_countdown"] = jnp.where(push_due, push_interval, info["push_countdown"] - 1)

        # Actuators: the bridge's PD law at every physics step, target delayed by `delay` steps.
        raw = action.astype(jnp.float32)
        target = jnp.clip(self._default + ACTION_SCALE * raw, self._lower, self._upper)
        previous_target = info["target"]
        delay = info["delay"]

        def physics_step(d: mjx.Data, k: jax.Array) -> tuple[mjx.Data, jax.Array]:
            applied = jnp.where(k < delay, previous_target, target)
            q, dq = d.qpos[self._qadr], d.qvel[self._dadr]
            tau = KP * (applied - q) - KD * dq
            knee_limit = jnp.interp(q, self._knee_angles, self._knee_torques)
            limit = jnp.where(self._is_knee, knee_limit, HIP_EFFORT_LIMIT)
            tau = jnp.clip(tau, -limit, limit)
            d = d.replace(qfrc_applied=d.qfrc_applied.at[self._dadr].set(tau))
            return mjx.step(self.sys, d), tau

        data, taus = jax.lax.scan(physics_step, data, jnp.arange(cfg.decimation))
        info["target"] = target

        # Contact timers, at the control rate.
        contact = self._foot_forces(data) > 1.0
        dt = cfg.ctrl_dt
        first_contact = (info["air_time"] > 0.0) & contact
        first_air = (info["contact_time"] > 0.0) & ~contact
        info["last_air_time"] = jnp.where(first_contact, info["air_time"] + dt, info["last_air_time"])
        info["last_contact_time"] = jnp.where(first_air, info["contact_time"] + dt, info["last_contact_time"])
        info["air_time"] = jnp.where(contact, 0.0, info["air_time"] + dt)
        info["contact_time"] = jnp.where(contact, info["contact_time"] + dt, 0.0)

        kin = self._kinematics(data)
        terms = self._reward_terms(info, kin, raw, taus[-1], data, contact)
        reward = dt * sum(REWARD_WEIGHTS[name] * value for name, value in terms.items())
        reward = jnp.nan_to_num(reward)

        finite = jnp.all(jnp.isfinite(data.qpos)) & jnp.all(jnp.isfinite(data.qvel))
        terminated = self._illegal_contact(data, kin) | ~finite
        steps = info["steps"] + 1
        timed_out = steps >= cfg.episode_steps
        done = terminated | timed_out

        # Commands: resample every resampling_time_s (training only).
        resample = (info["command_countdown"] <= 0) & (not self.eval_mode)
        info["command"] = jnp.where(resample, self._sample_command(k_cmd), info["command"])
        info["command_countdown"] = jnp.where(
            resample, round(cfg.resampling_time_s / dt), info["command_countdown"] - 1
        )
        info["last_action"] = raw
        info["steps"] = steps
        info["rng"] = rng

        obs = self._observation(kin, info, k_noise)
        lin_err = jnp.linalg.norm(info["command"][:2] - kin["lin_vel"][:2])
        ang_err = jnp.abs(info["command"][2] - kin["ang_vel"][2])
        metrics = {"lin_vel_error": lin_err, "ang_vel_error": ang_err, "terminated": terminated.astype(jnp.float32)}
        metrics.update({f"reward/{name}": value for name, value in terms.items()})

        # Episode sums for brax's training-metrics logger: kept through the `done` step (the logger
        # reads them there) and cleared on the step after, as brax's EpisodeWrapper does.
        keep = 1.0 - info["episode_done"]
        previous = info["episode_metrics"]
        episode_metrics = {
            "length": previous["length"] * keep + 1.0,
            "reward_per_step": previous["reward_per_step"] * keep + reward,
            "lin_vel_error_per_step": previous["lin_vel_error_per_step"] * keep + lin_err,
            "ang_vel_error_per_step": previous["ang_vel_error_per_step"] * keep + ang_err,
            "fell": previous["fell"] * keep + terminated.astype(jnp.float32),
        }
        done_f = done.astype(jnp.float32)
        truncation = (timed_out & ~terminated).astype(jnp.float32)
        if not self.eval_mode:  # eval episodes run to the end: no auto-reset
            # Auto-reset: a finished env starts a new episode here, with new randomness.
            fresh = self._fresh_state(k_reset)

            def pick(new: Any, old: Any) -> Any:
                return jnp.where(done, new, old)

            data = jax.tree.map(pick, fresh.pipeline_state, data)
            obs = jax.tree.map(pick, fresh.obs, obs)
            info = jax.tree.map(pick, fresh.info, info)
        info["episode_metrics"] = episode_metrics
        info["episode_done"] = done_f
        info["truncation"] = truncation
        return State(data, obs, reward, done_f, metrics, info)

    # --- pieces ------------------------------------------------------------------------------

    def _push_interval(self, key: jax.Array) -> jax.Array:
        lo, hi = (round(t / self.cfg.ctrl_dt) for t in self.cfg.push_interval_s)
        return jax.random.randint(key, (), lo, hi + 1)

    def _sample_command(self, key: jax.Array) -> jax.Array:
        cfg = self.cfg
        k_v, k_zero = jax.random.split(key)
        lo = jnp.array([cfg.lin_vel_x[0], cfg.lin_vel_y[0], cfg.ang_vel_z[0]])
        hi = jnp.array([cfg.lin_vel_x[1], cfg.lin_vel_y[1], cfg.ang_vel_z[1]])
        command = jax.random.uniform(k_v, (3,), minval=lo, maxval=hi)
        standing = jax.random.uniform(k_zero) < cfg.rel_standing_envs
        return jnp.where(standing, jnp.zeros(3), command)

    def _fresh_state(self, key: jax.Array, command: jax.Array | None = None, at_rest: bool = False) -> State:
        cfg = self.cfg
        keys = jax.random.split(key, 10)
        qpos = jnp.asarray(self._qpos0)
        qvel = jnp.zeros(self.mj_model.nv)
        if not at_rest:
            joint_pos = self._default + jax.random.uniform(
                keys[0], (12,), minval=-cfg.reset_joint_pos, maxval=cfg.reset_joint_pos
            )
            joint_pos = jnp.clip(joint_pos, self._lower, self._upper)
            joint_vel = jax.random.uniform(keys[1], (12,), minval=-cfg.reset_joint_vel, maxval=cfg.reset_joint_vel)
            yaw = jax.random.uniform(keys[2], (), minval=-jnp.pi, maxval=jnp.pi)
            xy = jax.random.uniform(keys[3], (2,), minval=-0.5, maxval=0.5)
            lin = jnp.asarray(cfg.reset_base_lin_vel) * jax.random.uniform(keys[4], (3,), minval=-1.0, maxval=1.0)
            ang = jnp.asarray(cfg.reset_base_ang_vel) * jax.random.uniform(keys[5], (3,), minval=-1.0, maxval=1.0)
            b = self._base_q
            qpos = qpos.at[self._qadr].set(joint_pos)
            qpos = qpos.at[b : b + 2].set(xy)
            qpos = qpos.at[b + 2].add(0.05)  # a 5 cm drop: random joint offsets must not start in the floor
            qpos = qpos.at[b + 3 : b + 7].set(jnp.array([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)]))
            v = self._base_v
            qvel = qvel.at[self._dadr].set(joint_vel)
            # free joint: linear velocity in the world frame, angular in the body frame
            rot = _quat_to_mat(qpos[b + 3 : b + 7])
            qvel = qvel.at[v : v + 3].set(rot @ lin)
            qvel = qvel.at[v + 3 : v + 6].set(ang)
        data = mjx.make_data(self.sys).replace(qpos=qpos, qvel=qvel)
        data = mjx.forward(self.sys, data)

        if command is None:
            command = self._sample_command(keys[6])
        lo, hi = cfg.delay_steps
        delay = 0 if self.eval_mode else jax.random.randint(keys[7], (), lo, hi + 1)
        zeros4 = jnp.zeros(4)
        info: dict[str, Any] = {
            "rng": keys[8],
            "command": jnp.asarray(command, dtype=jnp.float32),
            "command_countdown": jnp.asarray(round(cfg.resampling_time_s / cfg.ctrl_dt)),
            "push_countdown": self._push_interval(keys[9]),
            "delay": jnp.asarray(delay),
            "target": jnp.asarray(self._default),
            "last_action": jnp.zeros(12),
            "air_time": zeros4,
            "contact_time": zeros4,
            "last_air_time": zeros4,
            "last_contact_time": zeros4,
            "steps": jnp.asarray(0),
            "truncation": jnp.asarray(0.0),
            "episode_done": jnp.asarray(0.0),
            "episode_metrics": dict.fromkeys(EPISODE_METRICS, jnp.asarray(0.0)),
        }
        kin = self._kinematics(data)
        obs = self._observation(kin, info, keys[9])
        zero = jnp.asarray(0.0)
        metrics = {"lin_vel_error": zero, "ang_vel_error": zero, "terminated": zero}
        metrics.update({f"reward/{name}": zero for name in REWARD_WEIGHTS})
        return State(data, obs, zero, zero, metrics, info)

    def _kinematics(self, data: mjx.Data) -> dict[str, jax.Array]:
        """Base and feet quantities every reward and observation reads."""
        b, v = self._base_q, self._base_v
        rot = _quat_to_mat(data.qpos[b + 3 : b + 7])
        lin_vel = rot.T @ data.qvel[v : v + 3]
        ang_vel = data.qvel[v + 3 : v + 6]
        gravity = rot.T @ jnp.array([0.0, 0.0, -1.0])
        # Feet (positions of the last physics step's kinematics, 2 ms old): point velocities from
        # the lower legs' spatial velocities about the subtree COM (mj_objectVelocity's recipe).
        foot_pos = data.geom_xpos[self._foot_geoms]
        cvel = data.cvel[self._lleg_bodies]
        offset = foot_pos - data.subtree_com[self._base_body]
        foot_vel = cvel[:, 3:] + jnp.cross(cvel[:, :3], offset)
        return {
            "rot": rot,
            "lin_vel": lin_vel,
            "ang_vel": ang_vel,
            "gravity": gravity,
            "foot_pos": foot_pos,
            "foot_vel": foot_vel,
            "joint_pos": data.qpos[self._qadr],
            "joint_vel": data.qvel[self._dadr],
            "base_height": data.qpos[b + 2],
        }

    def _foot_forces(self, data: mjx.Data) -> jax.Array:
        """Normal contact force per foot, summed over the contacts whose geom pair holds the foot."""
        contact = data._impl.contact
        normal = data._impl.efc_force[self._contact_efc]
        is_foot = (contact.geom[None, :, :] == self._foot_geoms[:, None, None]).any(axis=-1)  # (4, ncon)
        return jnp.sum(jnp.where(is_foot & (contact.dist[None, :] < 0.0), normal[None, :], 0.0), axis=1)

    def _illegal_contact(self, data: mjx.Data, kin: dict[str, jax.Array]) -> jax.Array:
        """Body or leg touching the floor (Isaac Lab's body_contact termination), computed from
        geometry because those geoms do not collide in this MJX model."""
        rot = kin["rot"]
        box_bottom = data.xpos[self._base_body, 2] - jnp.abs(rot[2]) @ jnp.asarray(BODY_HALF_SIZE)
        hip = data.xpos[self._uleg_bodies, 2]
        knee = data.xpos[self._lleg_bodies, 2]
        shin_end = knee - LOWER_LEG_LENGTH * data.xmat[self._lleg_bodies, 2, 2]
        upper = jnp.minimum(hip, knee) - UPPER_LEG_RADIUS
        lower = jnp.minimum(knee, shin_end) - LOWER_LEG_RADIUS
        lowest = jnp.minimum(box_bottom, jnp.minimum(upper.min(), lower.min()))
        return (lowest < 0.0) | (kin["gravity"][2] > 0.0)

    def _observation(self, kin: dict[str, jax.Array], info: dict[str, Any], key: jax.Array) -> dict[str, jax.Array]:
        cfg = self.cfg
        clean = jnp.concatenate(
            [
                kin["lin_vel"],
                kin["ang_vel"],
                kin["gravity"],
                info["command"],
                kin["joint_pos"] - self._default,
                kin["joint_vel"],
                info["last_action"],
            ]
        )
        noise_scale = jnp.concatenate(
            [
                jnp.full(3, cfg.noise_lin_vel),
                jnp.full(3, cfg.noise_ang_vel),
                jnp.full(3, cfg.noise_gravity),
                jnp.zeros(3),
                jnp.full(12, cfg.noise_joint_pos),
                jnp.full(12, cfg.noise_joint_vel),
                jnp.zeros(12),
            ]
        )
        noisy = clean
        if cfg.observation_noise and not self.eval_mode:
            noisy = clean + noise_scale * jax.random.uniform(key, (48,), minval=-1.0, maxval=1.0)
        friction = self.sys.geom_friction[self._foot_geoms[0], 0]
        added_mass = self.sys.body_mass[self._base_body] - self._base_mass0
        privileged = jnp.concatenate(
            [
                clean,
                info["air_time"],
                info["contact_time"],
                jnp.stack([kin["base_height"], friction, added_mass * 0.1]),
            ]
        )
        return {"state": noisy, "privileged_state": privileged}

    def _reward_terms(
        self,
        info: dict[str, Any],
        kin: dict[str, jax.Array],
        action: jax.Array,
        tau: jax.Array,
        data: mjx.Data,
        contact: jax.Array,
    ) -> dict[str, jax.Array]:
        """Isaac Lab's Spot reward terms (spot/mdp/rewards.py), unweighted."""
        command = info["command"]
        cmd_norm = jnp.linalg.norm(command)
        body_speed = jnp.linalg.norm(kin["lin_vel"][:2])
        moving = (cmd_norm > 0.0) | (body_speed > 0.5)
        air, stance = info["air_time"], info["contact_time"]

        # air_time_reward (mode_time 0.3)
        mode_time = 0.3
        t_max = jnp.maximum(air, stance)
        t_min = jnp.minimum(t_max, mode_time)
        stance_reward = jnp.clip(stance - air, -mode_time, mode_time)
        air_time = jnp.sum(jnp.where(moving, jnp.where(t_max < mode_time, t_min, 0.0), stance_reward))

        # velocity tracking (abs exponential kernels)
        lin_err = jnp.linalg.norm(command[:2] - kin["lin_vel"][:2])
        ramp = jnp.maximum(1.0 + 0.5 * (jnp.linalg.norm(command[:2]) - 1.0), 1.0)
        base_linear_velocity = jnp.exp(-lin_err / 1.0) * ramp
        base_angular_velocity = jnp.exp(-jnp.abs(command[2] - kin["ang_vel"][2]) / 2.0)

        # foot clearance (target 0.1 m, std 0.05, tanh_mult 2)
        foot_speed = jnp.linalg.norm(kin["foot_vel"][:, :2], axis=-1)
        clearance_err = jnp.square(kin["foot_pos"][:, 2] - 0.1) * jnp.tanh(2.0 * foot_speed)
        foot_clearance = jnp.exp(-jnp.sum(clearance_err) / 0.05)

        # gait (trot pairs (fl, hr), (fr, hl); std 0.1, max_err 0.2)
        max_err2 = 0.2**2

        def sync(a: int, b: int) -> jax.Array:
            se_air = jnp.minimum(jnp.square(air[a] - air[b]), max_err2)
            se_contact = jnp.minimum(jnp.square(stance[a] - stance[b]), max_err2)
            return jnp.exp(-(se_air + se_contact) / 0.1)

        def anti_sync(a: int, b: int) -> jax.Array:
            se_0 = jnp.minimum(jnp.square(air[a] - stance[b]), max_err2)
            se_1 = jnp.minimum(jnp.square(stance[a] - air[b]), max_err2)
            return jnp.exp(-(se_0 + se_1) / 0.1)

        (p0a, p0b), (p1a, p1b) = self._foot_pairs_sync
        gait_value = (
            sync(p0a, p0b)
            * sync(p1a, p1b)
            * anti_sync(p0a, p1a)
            * anti_sync(p0b, p1b)
            * anti_sync(p0a, p1b)
            * anti_sync(p1a, p0b)
        )
        gait = jnp.where(moving, gait_value, 0.0)

        joint_pos_err = jnp.linalg.norm(kin["joint_pos"] - self._default)
        hips_acc = data.qacc[self._dadr][self._is_hip]
        hips_vel = kin["joint_vel"][self._is_hip]
        return {
            "air_time": air_time,
            "base_angular_velocity": base_angular_velocity,
            "base_linear_velocity": base_linear_velocity,
            "foot_clearance": foot_clearance,
            "gait": gait,
            "action_smoothness": jnp.linalg.norm(action - info["last_action"]),
            "air_time_variance": jnp.var(jnp.minimum(info["last_air_time"], 0.5))
            + jnp.var(jnp.minimum(info["last_contact_time"], 0.5)),
            "base_motion": 0.8 * jnp.square(kin["lin_vel"][2]) + 0.2 * jnp.sum(jnp.abs(kin["ang_vel"][:2])),
            "base_orientation": jnp.linalg.norm(kin["gravity"][:2]),
            "foot_slip": jnp.sum(contact * foot_speed),
            "joint_acc": jnp.linalg.norm(hips_acc),
            "joint_pos": jnp.where(moving, joint_pos_err, 5.0 * joint_pos_err),
            "joint_torques": jnp.linalg.norm(tau),
            "joint_vel": jnp.linalg.norm(hips_vel),
        }


def randomize(sys: mjx.Model, rng: jax.Array, cfg: EnvConfig, env: SpotFlatEnv) -> tuple[mjx.Model, mjx.Model]:
    """Per-env friction (floor and feet alike: MuJoCo takes a pair's max) and base mass.

    ``rng`` holds one key per env; returns the batched model and its vmap in_axes, the form
    brax's DomainRandomizationVmapWrapper takes.
    """

    @jax.vmap
    def one(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        k_mu, k_mass = jax.random.split(key)
        mu = jax.random.uniform(k_mu, (), minval=cfg.friction_range[0], maxval=cfg.friction_range[1])
        friction = sys.geom_friction.at[env._contact_geoms, 0].set(mu)
        added = jax.random.uniform(k_mass, (), minval=cfg.added_mass_range[0], maxval=cfg.added_mass_range[1])
        mass = sys.body_mass.at[env._base_body].add(added)
        return friction, mass

    friction, mass = one(rng)
    in_axes = jax.tree_util.tree_map(lambda _: None, sys)
    in_axes = in_axes.tree_replace({"geom_friction": 0, "body_mass": 0})
    batched = sys.tree_replace({"geom_friction": friction, "body_mass": mass})
    return batched, in_axes
