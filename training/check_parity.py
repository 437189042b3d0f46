"""Parity check: the MJX env and the CPU bridge backend, driven by the same actions, agree.

Runs both from rest in the default pose for a few seconds of a sinusoidal gait-like action
sequence, without noise, delay, pushes or randomization, and prints the largest difference of
each observation term. This is what proves the JAX PD law, joint mapping and observation match
``spot_sim_bridge.backends.mujoco`` (the remaining differences come from MJX's fixed solver
iterations and float32).

    python training/check_parity.py [--seconds 2] [--iterations 2 --ls-iterations 6]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src" / "spot_sim_bridge"))
sys.path.insert(0, str(REPO / "training"))

from spot_env import ACTION_SCALE, EnvConfig, SpotFlatEnv  # noqa: E402
from spot_task import FILE_IMPRATIO  # noqa: E402

from spot_sim_bridge.backends.mujoco import MujocoSpot  # noqa: E402

TERMS = {
    "base_lin_vel": slice(0, 3),
    "base_ang_vel": slice(3, 6),
    "projected_gravity": slice(6, 9),
    "joint_pos_rel": slice(12, 24),
    "joint_vel_rel": slice(24, 36),
}


def cpu_observation(spot: MujocoSpot, default: np.ndarray, command: np.ndarray, last: np.ndarray) -> np.ndarray:
    state = spot.state()
    return np.concatenate(
        [
            state.base_lin_vel_body,
            state.base_ang_vel_body,
            state.projected_gravity,
            command,
            state.q - default,
            state.dq,
            last,
        ]
    )


def actions(n: int) -> np.ndarray:
    """A trot-like open-loop action sequence in articulation order (raw policy units)."""
    t = np.arange(n)[:, None] * 0.02
    phase = np.array([0, np.pi, np.pi, 0] * 3)[None, :]
    amplitude = np.array([0.3] * 4 + [1.5] * 4 + [2.0] * 4)[None, :]
    return (amplitude * np.sin(2 * np.pi * 2.0 * t + phase)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--iterations", type=int, default=EnvConfig.solver_iterations, help="MJX Newton iterations")
    parser.add_argument("--ls-iterations", type=int, default=EnvConfig.solver_ls_iterations)
    parser.add_argument("--cone", choices=("elliptic", "pyramidal"), default=EnvConfig.cone)
    parser.add_argument("--impratio", type=float, default=None, help="default: spot.xml's 100 elliptic, 1 pyramidal")
    args = parser.parse_args()
    cfg = EnvConfig(
        observation_noise=False,
        solver_iterations=args.iterations,
        solver_ls_iterations=args.ls_iterations,
        cone=args.cone,
        impratio=args.impratio if args.impratio is not None else (FILE_IMPRATIO if args.cone == "elliptic" else 1.0),
    )
    env = SpotFlatEnv(cfg, eval_mode=True)
    command = np.zeros(3, dtype=np.float32)
    state = jax.jit(env.reset_with_command)(jax.random.PRNGKey(0), jnp.asarray(command))
    step = jax.jit(env.step)

    spot = MujocoSpot()
    spot.reset()
    default = env._default.astype(np.float64)
    n = round(args.seconds / cfg.ctrl_dt)
    worst = dict.fromkeys(TERMS, 0.0)
    for i, raw in enumerate(actions(n)):
        state = step(state, jnp.asarray(raw))
        spot.set_targets(np.clip(default + ACTION_SCALE * raw, env._lower, env._upper))
        spot.step(cfg.decimation)
        cpu = cpu_observation(spot, default, command, raw)
        mjx_obs = np.asarray(state.obs["state"])
        for name, part in TERMS.items():
            worst[name] = max(worst[name], float(np.abs(cpu[part] - mjx_obs[part]).max()))
        if i % 25 == 24:
            height = float(state.pipeline_state.qpos[2]), float(spot.state().base_pos[2])
            print(f"t={(i + 1) * cfg.ctrl_dt:4.1f}s base height mjx {height[0]:.4f} cpu {height[1]:.4f}")
    for name, value in worst.items():
        print(f"max |mjx - cpu| {name:18s} {value:.4f}")


if __name__ == "__main__":
    main()
