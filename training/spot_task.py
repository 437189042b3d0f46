"""The Spot flat velocity task's definition, without JAX: names, constants, settings.

Shared by the MJX env (``spot_env.py``), the trainer, the exporter (which writes these settings
into ``params/env.yaml`` and ``params/agent.yaml``) and the CPU evaluation, so one place says
what the shipped policy was trained with.
"""

from __future__ import annotations

import csv
import dataclasses
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO / "src" / "spot_sim_bridge" / "spot_sim_bridge" / "model"
SPOT_XML = MODEL_DIR / "spot.xml"
KNEE_TABLE_CSV = MODEL_DIR / "spot_knee_torque_limits.csv"

sys.path.insert(0, str(REPO / "src" / "spot_policy_node"))
from spot_policy.core import contract  # noqa: E402  (joint names: the one place that knows them)

JOINTS: tuple[str, ...] = contract.ISAAC_JOINT_ORDER
LEGS: tuple[str, ...] = contract.LEGS  # fl, fr, hl, hr: foot order of every per-foot array here

#: Nominal standing pose (SPOT.md, Isaac Lab's Spot config), by joint name.
DEFAULT_POSE: dict[str, float] = {
    **{f"{leg}_hx": (0.1 if leg.endswith("l") else -0.1) for leg in LEGS},
    **{f"{leg}_hy": (0.9 if leg.startswith("f") else 1.1) for leg in LEGS},
    **{f"{leg}_kn": -1.5 for leg in LEGS},
}
#: impratio of spot.xml's elliptic cones (the CPU bridge's); pyramidal cones here use 1.
FILE_IMPRATIO = 100.0
KP, KD = 60.0, 1.5
HIP_EFFORT_LIMIT = contract.HIP_EFFORT_LIMIT
ACTION_SCALE = 0.2
FOOT_RADIUS = 0.036
LOWER_LEG_LENGTH = 0.3  # lower-leg collision capsule: knee to 0.3 m down its z axis (spot.xml)
UPPER_LEG_RADIUS, LOWER_LEG_RADIUS = 0.04, 0.018
BODY_HALF_SIZE = (0.42, 0.12, 0.085)  # the body's collision box (spot.xml)

#: Isaac Lab Spot reward weights (flat_env_cfg.py), the per-step sum is multiplied by the
#: control period as Isaac Lab's reward manager does.
REWARD_WEIGHTS: dict[str, float] = {
    "air_time": 5.0,
    "base_angular_velocity": 5.0,
    "base_linear_velocity": 5.0,
    "foot_clearance": 0.5,
    "gait": 10.0,
    "action_smoothness": -1.0,
    "air_time_variance": -1.0,
    "base_motion": -2.0,
    "base_orientation": -3.0,
    "foot_slip": -0.5,
    "joint_acc": -1.0e-4,
    "joint_pos": -0.7,
    "joint_torques": -5.0e-4,
    "joint_vel": -1.0e-2,
}


#: Per-episode sums in ``info['episode_metrics']`` (brax's logger divides ``*_per_step`` by length).
EPISODE_METRICS = ("length", "reward_per_step", "lin_vel_error_per_step", "ang_vel_error_per_step", "fell")


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Task settings; defaults are the training settings of the shipped policy."""

    physics_dt: float = 0.002
    decimation: int = 10
    episode_length_s: float = 20.0
    # commands (UniformVelocityCommand, heading off)
    lin_vel_x: tuple[float, float] = (-1.0, 2.0)
    lin_vel_y: tuple[float, float] = (-1.0, 1.0)
    ang_vel_z: tuple[float, float] = (-1.5, 1.5)
    rel_standing_envs: float = 0.1
    resampling_time_s: float = 10.0
    # domain randomization
    friction_range: tuple[float, float] = (0.4, 1.25)
    added_mass_range: tuple[float, float] = (-5.0, 5.0)
    push_interval_s: tuple[float, float] = (10.0, 15.0)
    push_velocity: float = 0.5  # m/s, uniform in x and y
    delay_steps: tuple[int, int] = (0, 4)  # physics steps, inclusive
    observation_noise: bool = True
    # Isaac Lab's Spot observation noise (uniform +-value per term)
    noise_lin_vel: float = 0.1
    noise_ang_vel: float = 0.1
    noise_gravity: float = 0.05
    noise_joint_pos: float = 0.05
    noise_joint_vel: float = 0.5
    # reset (Isaac Lab's reset_root_state_uniform / reset_joints_around_default)
    reset_joint_pos: float = 0.2
    reset_joint_vel: float = 2.5
    reset_base_lin_vel: tuple[float, float, float] = (1.5, 1.0, 0.5)
    reset_base_ang_vel: tuple[float, float, float] = (0.7, 0.7, 1.0)
    random_initial_episode_step: bool = True  # spread time-outs, like RSL-RL's init_at_random_ep_len
    # MJX solver and contacts (see load_model)
    # MJX contact solver of the shipped run (see spot_env.load_model): pyramidal cones, impratio 1,
    # 4 Newton iterations of 8 line-search steps. spot.xml itself says elliptic, impratio 100.
    cone: str = "pyramidal"  # "elliptic" or "pyramidal"
    impratio: float = 1.0
    solver_iterations: int = 4
    solver_ls_iterations: int = 8
    foot_contacts_only: bool = True

    @property
    def ctrl_dt(self) -> float:
        return self.physics_dt * self.decimation

    @property
    def episode_steps(self) -> int:
        return round(self.episode_length_s / self.ctrl_dt)


def load_knee_table() -> tuple[np.ndarray, np.ndarray]:
    """(knee angle rad ascending, max torque N*m): the table the CPU backend interpolates."""
    with open(KNEE_TABLE_CSV, newline="") as table:
        rows = sorted((float(r["knee_angle_rad"]), float(r["max_output_torque_nm"])) for r in csv.DictReader(table))
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


#: Actor and critic hidden layers (Isaac Lab's Spot: [512, 256, 128], ELU).
HIDDEN = (512, 256, 128)


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """RSL-RL's Spot settings (ISAACLAB.md) in brax's terms, with 4x the envs (GPU throughput)."""

    num_envs: int = 16384
    unroll_length: int = 24  # num_steps_per_env
    num_minibatches: int = 4
    num_updates_per_batch: int = 5  # num_learning_epochs
    learning_rate: float = 1e-3
    desired_kl: float = 0.01
    entropy_cost: float = 0.0025
    discounting: float = 0.99
    gae_lambda: float = 0.95
    clipping_epsilon: float = 0.2
    max_grad_norm: float = 1.0
    vf_loss_coefficient: float = 1.0
    init_noise_std: float = 1.0
    training_steps_per_epoch: int = 25  # PPO iterations between checkpoints (9.8 M env steps)

    @property
    def batch_size(self) -> int:
        """brax's minibatch size in env sequences: one unroll per env per iteration."""
        return self.num_envs // self.num_minibatches

    @property
    def steps_per_iteration(self) -> int:
        return self.num_envs * self.unroll_length

    @property
    def steps_per_epoch(self) -> int:
        return self.steps_per_iteration * self.training_steps_per_epoch
