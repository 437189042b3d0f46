"""Ship a trained actor as an Isaac Lab run folder: ONNX, params/env.yaml, params/agent.yaml, curves.

Input: a training output folder (``actor_weights.npz`` and ``progress.json`` from
``train_spot.py``). Output (default ``config/policies/spot_flat_mjx``):

- ``exported/policy.onnx``: input ``obs`` [1, 48] float32 -> output ``actions`` [1, 12], the raw
  action (the Gaussian's mean; brax's ``normal`` distribution has no tanh). The observation
  normalizer is folded into the first layer: ``W' = W / std``, ``b' = b - (mean / std) @ W``.
- ``exported/actor_weights.npz``: the trained actor as trained (normalizer separate), so a test
  proves ONNX == trained network without JAX.
- ``params/env.yaml`` and ``params/agent.yaml`` in Isaac Lab's layout, with this training's values.
- ``training_curves.png``.

Needs numpy, onnx and PyYAML only (no JAX):  python training/export_policy.py RUN_DIR [--dest DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))
sys.path.insert(0, str(REPO / "src" / "spot_policy_node"))

from isaaclab_yaml import ALL, dump_isaaclab_yaml  # noqa: E402
from spot_task import (  # noqa: E402
    ACTION_SCALE,
    HIDDEN,
    HIP_EFFORT_LIMIT,
    KD,
    KNEE_TABLE_CSV,
    KP,
    REWARD_WEIGHTS,
    EnvConfig,
    PPOConfig,
)

from spot_policy.core.onnx_mlp import Layer, mlp_forward, mlp_to_onnx  # noqa: E402

DEFAULT_DEST = REPO / "config" / "policies" / "spot_flat_mjx"
SPOT_XML_REL = "src/spot_sim_bridge/spot_sim_bridge/model/spot.xml"
OBS = "isaaclab.envs.mdp.observations"
SPOT_REWARDS = "isaaclab_tasks.manager_based.locomotion.velocity.config.spot.mdp.rewards"


def load_actor(npz: Path) -> tuple[np.ndarray, np.ndarray, list[Layer]]:
    """(obs_mean, obs_std, layers) of an ``actor_weights.npz``."""
    with np.load(npz) as data:
        n = sum(1 for k in data.files if k.startswith("w"))
        layers = [(data[f"w{i}"].astype(np.float32), data[f"b{i}"].astype(np.float32)) for i in range(n)]
        return data["obs_mean"].astype(np.float32), data["obs_std"].astype(np.float32), layers


def actor_forward(npz: Path, obs: np.ndarray) -> np.ndarray:
    """The trained network as trained: normalize, then the MLP (ELU hidden, linear output)."""
    mean, std, layers = load_actor(npz)
    return mlp_forward(layers, (np.asarray(obs, dtype=np.float32) - mean) / std)


def fold_normalizer(mean: np.ndarray, std: np.ndarray, layers: list[Layer]) -> list[Layer]:
    """Layers computing ``mlp((x - mean) / std)`` from raw ``x`` (folded in float64, stored float32)."""
    w, b = (a.astype(np.float64) for a in layers[0])
    w_folded = w / std.astype(np.float64)[:, None]
    b_folded = b - (mean.astype(np.float64) / std.astype(np.float64)) @ w
    return [(w_folded.astype(np.float32), b_folded.astype(np.float32)), *layers[1:]]


def _noise(limit: float) -> dict[str, Any]:
    return {
        "func": "isaaclab.utils.noise.noise_model:uniform_noise",
        "operation": "add",
        "n_min": -limit,
        "n_max": limit,
    }


def _asset(joints: bool) -> dict[str, Any]:
    cfg: dict[str, Any] = {"name": "robot", "joint_names": None, "joint_ids": ALL}
    cfg.update({"fixed_tendon_names": None, "body_names": None, "body_ids": ALL, "preserve_order": False})
    return cfg if joints else {"name": "robot"}


def _term(func: str, noise: float | None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "func": f"{OBS}:{func}",
        "params": params or {},
        "modifiers": None,
        "noise": _noise(noise) if noise is not None else None,
        "clip": None,
        "scale": None,
        "history_length": 0,
        "flatten_history_dim": True,
    }


def knee_lookup() -> list[list[float]]:
    rows = np.loadtxt(KNEE_TABLE_CSV, delimiter=",", skiprows=1)
    return [[float(v) for v in row] for row in rows]


def env_yaml(cfg: EnvConfig, ppo: PPOConfig, stand_height: float = 0.52) -> dict[str, Any]:
    """The environment config in the shape Isaac Lab dumps for Isaac-Velocity-Flat-Spot-v0."""
    obs_policy: dict[str, Any] = {
        "concatenate_terms": True,
        "concatenate_dim": -1,
        "enable_corruption": cfg.observation_noise,
        "history_length": None,
        "flatten_history_dim": True,
        "base_lin_vel": _term("base_lin_vel", cfg.noise_lin_vel),
        "base_ang_vel": _term("base_ang_vel", cfg.noise_ang_vel),
        "projected_gravity": _term("projected_gravity", cfg.noise_gravity),
        "velocity_commands": _term("generated_commands", None, {"command_name": "base_velocity"}),
        "joint_pos": _term("joint_pos_rel", cfg.noise_joint_pos, {"asset_cfg": _asset(True)}),
        "joint_vel": _term("joint_vel_rel", cfg.noise_joint_vel, {"asset_cfg": _asset(True)}),
        "actions": _term("last_action", None),
    }
    rewards = {
        name: {"func": f"{SPOT_REWARDS}:{_REWARD_FUNCS[name]}", "weight": w, "params": _REWARD_PARAMS.get(name, {})}
        for name, w in REWARD_WEIGHTS.items()
    }
    lo, hi = cfg.push_interval_s
    push = cfg.push_velocity
    return {
        "viewer": {"eye": (10.5, 10.5, 0.3), "origin_type": "world", "env_index": 0, "asset_name": "robot"},
        "sim": {
            "physics_prim_path": "/physicsScene",
            "device": "cuda:0",
            "dt": cfg.physics_dt,
            "render_interval": cfg.decimation,
            "gravity": (0.0, 0.0, -9.81),
            # not an Isaac Lab key: the physics this run was trained in (TRAINING.md)
            "engine": f"mujoco-mjx 3.17.0, {cfg.cone} cones, impratio {cfg.impratio:g}, Newton "
            f"{cfg.solver_iterations}x{cfg.solver_ls_iterations}"
            f"{', foot contacts only' if cfg.foot_contacts_only else ''}, model {SPOT_XML_REL}",
        },
        "seed": 0,
        "decimation": cfg.decimation,
        "scene": {
            "num_envs": ppo.num_envs,
            "env_spacing": 2.5,
            "robot": {
                "class_type": "isaaclab.assets.articulation.articulation:Articulation",
                "prim_path": "/World/envs/env_.*/Robot",
                "spawn": {"mjcf_path": SPOT_XML_REL},
                "init_state": {
                    "pos": (0.0, 0.0, round(stand_height, 3)),
                    "rot": (1.0, 0.0, 0.0, 0.0),
                    "lin_vel": (0.0, 0.0, 0.0),
                    "ang_vel": (0.0, 0.0, 0.0),
                    "joint_pos": {"[fh]l_hx": 0.1, "[fh]r_hx": -0.1, "f[rl]_hy": 0.9, "h[rl]_hy": 1.1, ".*_kn": -1.5},
                    "joint_vel": {".*": 0.0},
                },
                "actuators": {
                    "spot_hip": {
                        "class_type": "isaaclab.actuators.actuator_pd:DelayedPDActuator",
                        "joint_names_expr": [".*_h[xy]"],
                        "effort_limit": HIP_EFFORT_LIMIT,
                        "velocity_limit": None,
                        "stiffness": KP,
                        "damping": KD,
                        "armature": None,
                        "friction": None,
                        "min_delay": cfg.delay_steps[0],
                        "max_delay": cfg.delay_steps[1],
                    },
                    "spot_knee": {
                        "class_type": "isaaclab.actuators.actuator_pd:RemotizedPDActuator",
                        "joint_names_expr": [".*_kn"],
                        "effort_limit": None,
                        "velocity_limit": None,
                        "stiffness": KP,
                        "damping": KD,
                        "armature": None,
                        "friction": None,
                        "min_delay": cfg.delay_steps[0],
                        "max_delay": cfg.delay_steps[1],
                        "joint_parameter_lookup": knee_lookup(),
                    },
                },
            },
        },
        "observations": {"policy": obs_policy},
        "actions": {
            "joint_pos": {
                "class_type": "isaaclab.envs.mdp.actions.joint_actions:JointPositionAction",
                "asset_name": "robot",
                "debug_vis": False,
                "clip": None,
                "joint_names": [".*"],
                "scale": ACTION_SCALE,
                "offset": 0.0,
                "preserve_order": False,
                "use_default_offset": True,
            }
        },
        "events": {
            "physics_material": {
                "func": "isaaclab.envs.mdp.events:randomize_rigid_body_material",
                "mode": "startup",
                "params": {"static_friction_range": cfg.friction_range, "dynamic_friction_range": cfg.friction_range},
            },
            "add_base_mass": {
                "func": "isaaclab.envs.mdp.events:randomize_rigid_body_mass",
                "mode": "startup",
                "params": {"mass_distribution_params": cfg.added_mass_range, "operation": "add"},
            },
            "reset_base": {
                "func": "isaaclab.envs.mdp.events:reset_root_state_uniform",
                "mode": "reset",
                "params": {
                    "pose_range": {"x": (-0.5, 0.5), "y": (-0.5, 0.5), "yaw": (-3.14, 3.14)},
                    "velocity_range": {
                        axis: (-v, v)
                        for axis, v in zip(
                            ("x", "y", "z", "roll", "pitch", "yaw"),
                            (*cfg.reset_base_lin_vel, *cfg.reset_base_ang_vel),
                            strict=True,
                        )
                    },
                },
            },
            "reset_robot_joints": {
                "func": "isaaclab_tasks.manager_based.locomotion.velocity.config.spot.mdp.events:"
                "reset_joints_around_default",
                "mode": "reset",
                "params": {
                    "position_range": (-cfg.reset_joint_pos, cfg.reset_joint_pos),
                    "velocity_range": (-cfg.reset_joint_vel, cfg.reset_joint_vel),
                },
            },
            "push_robot": {
                "func": "isaaclab.envs.mdp.events:push_by_setting_velocity",
                "mode": "interval",
                "interval_range_s": (lo, hi),
                "params": {"velocity_range": {"x": (-push, push), "y": (-push, push)}},
            },
        },
        "commands": {
            "base_velocity": {
                "class_type": "isaaclab.envs.mdp.commands.velocity_command:UniformVelocityCommand",
                "resampling_time_range": (cfg.resampling_time_s, cfg.resampling_time_s),
                "debug_vis": True,
                "asset_name": "robot",
                "heading_command": False,
                "heading_control_stiffness": 1.0,
                "rel_standing_envs": cfg.rel_standing_envs,
                "rel_heading_envs": 0.0,
                "ranges": {
                    "lin_vel_x": tuple(cfg.lin_vel_x),
                    "lin_vel_y": tuple(cfg.lin_vel_y),
                    "ang_vel_z": tuple(cfg.ang_vel_z),
                    "heading": None,
                },
            }
        },
        "rewards": rewards,
        "terminations": {
            "time_out": {"func": "isaaclab.envs.mdp.terminations:time_out", "time_out": True},
            "body_contact": {
                "func": "isaaclab.envs.mdp.terminations:illegal_contact",
                "params": {"body_names": ["body", ".*leg"], "threshold": 1.0},
            },
        },
        "episode_length_s": cfg.episode_length_s,
        "is_finite_horizon": False,
    }


_REWARD_FUNCS = {
    "air_time": "air_time_reward",
    "base_angular_velocity": "base_angular_velocity_reward",
    "base_linear_velocity": "base_linear_velocity_reward",
    "foot_clearance": "foot_clearance_reward",
    "gait": "GaitReward",
    "action_smoothness": "action_smoothness_penalty",
    "air_time_variance": "air_time_variance_penalty",
    "base_motion": "base_motion_penalty",
    "base_orientation": "base_orientation_penalty",
    "foot_slip": "foot_slip_penalty",
    "joint_acc": "joint_acceleration_penalty",
    "joint_pos": "joint_position_penalty",
    "joint_torques": "joint_torques_penalty",
    "joint_vel": "joint_velocity_penalty",
}
_REWARD_PARAMS: dict[str, dict[str, Any]] = {
    "air_time": {"mode_time": 0.3, "velocity_threshold": 0.5},
    "base_angular_velocity": {"std": 2.0},
    "base_linear_velocity": {"std": 1.0, "ramp_rate": 0.5, "ramp_at_vel": 1.0},
    "foot_clearance": {"std": 0.05, "tanh_mult": 2.0, "target_height": 0.1},
    "gait": {
        "std": 0.1,
        "max_err": 0.2,
        "velocity_threshold": 0.5,
        "synced_feet_pair_names": (("fl_foot", "hr_foot"), ("fr_foot", "hl_foot")),
    },
    "foot_slip": {"threshold": 1.0},
    "joint_pos": {"stand_still_scale": 5.0, "velocity_threshold": 0.5},
}


def agent_yaml(ppo: PPOConfig, iterations: int) -> dict[str, Any]:
    """RSL-RL's runner config layout, with brax's PPO settings that trained this policy."""
    return {
        "seed": 0,
        "device": "cuda:0",
        "num_steps_per_env": ppo.unroll_length,
        "max_iterations": iterations,
        "empirical_normalization": True,  # brax's running normalizer; folded into policy.onnx
        "clip_actions": None,
        "save_interval": ppo.training_steps_per_epoch,
        "experiment_name": "spot_flat_mjx",
        "run_name": "",
        "logger": "stdout",
        "trainer": "brax 0.14.2 ppo.train (MJX), training/train_spot.py",
        "num_envs": ppo.num_envs,
        "policy": {
            "class_name": "ActorCritic",
            "init_noise_std": ppo.init_noise_std,
            "noise_std_type": "scalar",
            "actor_obs_normalization": True,
            "critic_obs_normalization": True,
            "actor_hidden_dims": list(HIDDEN),
            "critic_hidden_dims": list(HIDDEN),
            "activation": "elu",
            "critic_observations": "policy terms without noise + foot air/contact time, base height, friction, "
            "added mass (asymmetric critic)",
        },
        "algorithm": {
            "class_name": "PPO",
            "value_loss_coef": ppo.vf_loss_coefficient,
            "use_clipped_value_loss": True,
            "clip_param": ppo.clipping_epsilon,
            "entropy_coef": ppo.entropy_cost,
            "num_learning_epochs": ppo.num_updates_per_batch,
            "num_mini_batches": ppo.num_minibatches,
            "learning_rate": ppo.learning_rate,
            "schedule": "adaptive",
            "gamma": ppo.discounting,
            "lam": ppo.gae_lambda,
            "desired_kl": ppo.desired_kl,
            "max_grad_norm": ppo.max_grad_norm,
        },
    }


def _config_from(progress: dict[str, Any]) -> tuple[EnvConfig, PPOConfig]:
    def build(cls: type, values: dict[str, Any]) -> Any:
        fields = {f for f in cls.__dataclass_fields__}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in fields})

    return build(EnvConfig, progress.get("env_config", {})), build(PPOConfig, progress.get("ppo_config", {}))


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Reward, tracking errors, fall rate and throughput against env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    episodes = [h for h in history if h.get("kind") == "episodes"]
    epochs = [h for h in history if h.get("kind") == "epoch"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))

    def series(rows: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
        return np.array([r["env_steps"] for r in rows]) / 1e6, np.array([r[key] for r in rows], dtype=float)

    axes[0, 0].plot(*series(episodes, "reward_per_step"))
    axes[0, 0].set_title("training episodes: reward per step")
    axes[0, 1].plot(*series(episodes, "lin_vel_error"), label="linear |v_cmd - v| (m/s)")
    axes[0, 1].plot(*series(episodes, "ang_vel_error"), label="yaw |w_cmd - w| (rad/s)")
    axes[0, 1].set_title("training episodes: tracking error (randomized)")
    axes[0, 1].legend()
    axes[1, 0].plot(*series(episodes, "fall_rate"))
    axes[1, 0].set_title("training episodes: share ending in a fall")
    axes[1, 1].plot(*series(epochs, "sps"))
    axes[1, 1].set_title("PPO throughput (env steps/s, incl. updates)")
    for ax in axes.flat:
        ax.set_xlabel("env steps (millions)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def export(run_dir: Path, dest: Path) -> None:
    npz = run_dir / "actor_weights.npz"
    progress = json.loads((run_dir / "progress.json").read_text())
    env_cfg, ppo_cfg = _config_from(progress)
    mean, std, layers = load_actor(npz)
    sizes = [layers[0][0].shape[0], *(w.shape[1] for w, _ in layers)]
    if sizes != [48, *HIDDEN, 12]:
        raise SystemExit(f"unexpected actor sizes {sizes}")

    (dest / "exported").mkdir(parents=True, exist_ok=True)
    onnx_path = mlp_to_onnx(fold_normalizer(mean, std, layers), dest / "exported" / "policy.onnx")
    shutil.copyfile(npz, dest / "exported" / "actor_weights.npz")

    obs = mean + std * np.random.default_rng(0).standard_normal((256, 48)).astype(np.float32)
    folded = mlp_forward(fold_normalizer(mean, std, layers), obs)
    err = float(np.abs(folded - actor_forward(npz, obs)).max())
    print(f"exported {onnx_path}: folded vs trained max |diff| {err:.2e}")

    iterations = int(progress["total_env_steps"] // ppo_cfg.steps_per_iteration)
    header = (
        "Written by training/export_policy.py from a brax/MJX training run, in Isaac Lab's params/*.yaml layout.\n"
        "See ../TRAINING.md for what differs from Isaac Lab's Isaac-Velocity-Flat-Spot-v0."
    )
    dump_isaaclab_yaml(env_yaml(env_cfg, ppo_cfg), dest / "params" / "env.yaml", header)
    dump_isaaclab_yaml(agent_yaml(ppo_cfg, iterations), dest / "params" / "agent.yaml", header)
    plot_curves(progress["history"], dest / "training_curves.png")
    print(f"wrote {dest}/params/env.yaml, agent.yaml, training_curves.png ({iterations} PPO iterations)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="train_spot.py output (actor_weights.npz, progress.json)")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    args = parser.parse_args()
    export(args.run_dir, args.dest)


if __name__ == "__main__":
    main()
