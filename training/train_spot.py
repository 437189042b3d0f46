"""Train the Spot flat velocity policy with brax PPO on MJX, in time-boxed, resumable calls.

Each call trains until ``--time-budget-s`` (wall clock from start, compile included) would be
exceeded by one more epoch, or until ``--total-steps`` environment steps have been done over all
calls, saving after every epoch into ``--out``:

- ``checkpoint.pkl``: normalizer, policy and value parameters, step count, learning rate, history
  (what ``--resume`` reads; about 3 MB);
- ``actor_weights.npz``: the actor in plain numpy (observation normalizer, layers, action std),
  what ``export_policy.py`` turns into ``policy.onnx``;
- ``progress.json``: the history (for the curves) and the settings.

The reproduction of the shipped policy is in ``training/README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))


def patch_jax_for_brax() -> None:
    """brax 0.14.2's PPO calls ``jax.device_put_replicated``, which jax 0.11 removed.

    One device (what this script uses): stacking a leading axis of 1 and putting it on that
    device is what the removed function returned.
    """
    if hasattr(jax, "device_put_replicated"):
        return

    def device_put_replicated(value: Any, devices: list[Any]) -> Any:
        if len(devices) != 1:
            raise NotImplementedError("this replacement covers one device; run with max_devices_per_host=1")
        stacked = jax.tree.map(lambda x: jnp.expand_dims(jnp.asarray(x), 0), value)
        return jax.device_put(stacked, devices[0])

    jax.device_put_replicated = device_put_replicated


patch_jax_for_brax()

from brax.envs.base import Env, State  # noqa: E402
from brax.envs.wrappers import training as brax_wrappers  # noqa: E402
from brax.training.agents.ppo import networks as ppo_networks  # noqa: E402
from brax.training.agents.ppo import train as ppo  # noqa: E402
from flax import linen  # noqa: E402
from spot_env import SpotFlatEnv, randomize  # noqa: E402
from spot_task import FILE_IMPRATIO, HIDDEN, EnvConfig, PPOConfig  # noqa: E402


class StopTraining(Exception):
    """Raised from the epoch callback once the time budget or step target is reached."""


class _NoEvalEnv(Env):
    """Stands in for brax's evaluator env (this script logs training episodes instead), so brax
    compiles no second copy of the physics."""

    def __init__(self, obs_size: dict[str, tuple[int, ...]]) -> None:
        self._obs_size = obs_size

    def reset(self, rng: jax.Array) -> State:
        obs = {k: jnp.zeros(v) for k, v in self._obs_size.items()}
        zero = jnp.zeros(())
        return State(None, obs, zero, zero, {}, {})

    def step(self, state: State, action: jax.Array) -> State:
        return state

    @property
    def observation_size(self) -> dict[str, tuple[int, ...]]:
        return self._obs_size

    @property
    def action_size(self) -> int:
        return 12

    @property
    def backend(self) -> str:
        return "none"


def wrap_env(env: Env, episode_length: int, action_repeat: int, randomization_fn: Any = None) -> Env:
    """Vmap (with per-env randomized models); the env does its own episodes and auto-reset."""
    del episode_length, action_repeat
    if randomization_fn is None or not isinstance(env, SpotFlatEnv):
        return brax_wrappers.VmapWrapper(env)
    return brax_wrappers.DomainRandomizationVmapWrapper(env, randomization_fn)


def make_networks(ppo_cfg: PPOConfig) -> Any:
    return functools.partial(
        ppo_networks.make_ppo_networks,
        policy_hidden_layer_sizes=HIDDEN,
        value_hidden_layer_sizes=HIDDEN,
        activation=linen.elu,
        policy_obs_key="state",
        value_obs_key="privileged_state",
        distribution_type="normal",  # unsquashed Gaussian: the mean is the raw action
        noise_std_type="scalar",
        init_noise_std=ppo_cfg.init_noise_std,
    )


def actor_arrays(params: tuple[Any, Any, Any]) -> dict[str, np.ndarray]:
    """The actor as numpy: normalizer mean/std of 'state', layers w{i} [in, out] / b{i}, action std."""
    normalizer, policy, _ = params
    tree = policy["params"]
    mlp = tree["MLP_0"]
    layers = [mlp[f"hidden_{i}"] for i in range(len(mlp))] + [tree["Dense_0"]]
    out: dict[str, np.ndarray] = {
        "obs_mean": np.asarray(normalizer.mean["state"], dtype=np.float32),
        "obs_std": np.asarray(normalizer.std["state"], dtype=np.float32),
        "action_std": np.asarray(tree["std_param"]["value"], dtype=np.float32),
        "activation": np.array("elu"),
    }
    for i, layer in enumerate(layers):
        out[f"w{i}"] = np.asarray(layer["kernel"], dtype=np.float32)
        out[f"b{i}"] = np.asarray(layer["bias"], dtype=np.float32)
    return out


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def sanity_check(env_cfg: EnvConfig, num_envs: int, seconds: float = 2.0) -> float:
    """Observation shapes, standing still on zero actions, and env-only steps/s (physics + rewards +
    randomization + auto-reset, no policy). Returns the env steps per second."""
    env = SpotFlatEnv(dataclasses.replace(env_cfg, random_initial_episode_step=False))
    keys = jax.random.split(jax.random.PRNGKey(1), num_envs)
    wrapped = wrap_env(env, 0, 1, functools.partial(randomize, rng=keys, cfg=env_cfg, env=env))
    n = round(seconds / env_cfg.ctrl_dt)

    @jax.jit
    def rollout(key: jax.Array) -> tuple[State, jax.Array]:
        state = wrapped.reset(jax.random.split(key, num_envs))

        def body(s: State, _: Any) -> tuple[State, jax.Array]:
            s = wrapped.step(s, jnp.zeros((num_envs, 12)))
            return s, s.metrics["terminated"]

        return jax.lax.scan(body, state, None, length=n)

    t0 = time.time()
    state, terminated = jax.block_until_ready(rollout(jax.random.PRNGKey(2)))
    compile_and_run = time.time() - t0
    t0 = time.time()
    state, terminated = jax.block_until_ready(rollout(jax.random.PRNGKey(3)))
    run = time.time() - t0
    sps = num_envs * n / run
    label = f"{env_cfg.cone} {env_cfg.solver_iterations}/{env_cfg.solver_ls_iterations} x{num_envs}"
    shapes = {k: tuple(v.shape) for k, v in state.obs.items()}
    fell = float(terminated.max(axis=0).mean()) * 100
    height = float(state.pipeline_state.qpos[:, 2].mean())
    print(
        f"[sanity {label}] obs {shapes}; zero action for {seconds:.0f} s (random reset state): "
        f"{fell:.1f} % fell, mean base height {height:.3f} m; {sps:,.0f} env steps/s "
        f"({sps * env_cfg.decimation:,.0f} physics steps/s); compile+first run {compile_and_run:.1f} s",
        flush=True,
    )
    return sps


def parse_measure(spec: str, base: EnvConfig) -> tuple[EnvConfig, int]:
    """``cone/iterations/ls_iterations/num_envs``, e.g. ``pyramidal/4/8/8192``."""
    cone, iterations, ls_iterations, num_envs = spec.split("/")
    cfg = dataclasses.replace(
        base,
        cone=cone,
        impratio=FILE_IMPRATIO if cone == "elliptic" else 1.0,
        solver_iterations=int(iterations),
        solver_ls_iterations=int(ls_iterations),
    )
    return cfg, int(num_envs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "runs/spot_flat_mjx")))
    parser.add_argument("--resume", type=Path, nargs="*", default=[], help="checkpoint.pkl candidates, first found")
    parser.add_argument(
        "--total-steps", type=int, default=52 * PPOConfig().steps_per_epoch, help="env steps over all calls"
    )
    parser.add_argument("--time-budget-s", type=float, default=540.0, help="wall clock of this call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-envs", type=int, default=PPOConfig.num_envs)
    parser.add_argument("--iterations-per-epoch", type=int, default=PPOConfig.training_steps_per_epoch)
    parser.add_argument(
        "--measure",
        nargs="*",
        default=[],
        metavar="CONE/IT/LS/ENVS",
        help="before training: sanity check and env-only steps/s of these solver settings, e.g. elliptic/8/30/8192",
    )
    parser.add_argument("--cone", choices=("elliptic", "pyramidal"), default=EnvConfig.cone)
    parser.add_argument("--iterations", type=int, default=EnvConfig.solver_iterations, help="MJX Newton iterations")
    parser.add_argument("--ls-iterations", type=int, default=EnvConfig.solver_ls_iterations)
    parser.add_argument("--mirror", type=Path, default=None, help="also save checkpoints here (survives calls)")
    args = parser.parse_args()

    t_start = time.time()
    jax.config.update("jax_compilation_cache_dir", "/tmp/jax_cache")
    env_cfg = EnvConfig(
        cone=args.cone,
        impratio=FILE_IMPRATIO if args.cone == "elliptic" else 1.0,
        solver_iterations=args.iterations,
        solver_ls_iterations=args.ls_iterations,
    )
    ppo_cfg = PPOConfig(num_envs=args.num_envs, training_steps_per_epoch=args.iterations_per_epoch)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"[setup] jax {jax.__version__} devices {jax.devices()}", flush=True)
    for spec in args.measure:
        sanity_check(*parse_measure(spec, env_cfg))

    resume = next((p for p in args.resume if p.is_file()), None)
    previous: dict[str, Any] = {}
    if resume is not None:
        with open(resume, "rb") as f:
            previous = pickle.load(f)
        print(
            f"[setup] resuming from {resume}: {previous['total_env_steps']:,} steps, "
            f"{previous['train_wall_s']:.0f} s trained",
            flush=True,
        )
    done_steps = int(previous.get("total_env_steps", 0))
    history: list[dict[str, Any]] = list(previous.get("history", []))
    calls: list[dict[str, Any]] = list(previous.get("calls", []))
    call_index = len(calls)
    remaining = args.total_steps - done_steps
    if remaining <= 0:
        print("[done] total steps already reached")
        return
    epochs = int(np.ceil(remaining / ppo_cfg.steps_per_epoch))
    env = SpotFlatEnv(env_cfg)

    state: dict[str, Any] = {
        "last_epoch_end": None,
        "epoch_s": None,
        "params": None,
        "steps": done_steps,
        "lr": None,
        "logger_sps": None,
    }
    call_record = {"index": call_index, "device": str(jax.devices()[0].device_kind), "started_steps": done_steps}

    def save(current_step: int, params: Any, lr: float | None) -> None:
        total = done_steps + current_step
        trained = previous.get("train_wall_s", 0.0) + (time.time() - t_start)
        call_record.update({"env_steps": current_step, "wall_s": time.time() - t_start})
        payload = {
            "params": jax.device_get(params),
            "total_env_steps": total,
            "train_wall_s": trained,
            "learning_rate": lr,
            "history": history,
            "calls": [*calls, call_record],
            "env_config": dataclasses.asdict(env_cfg),
            "ppo_config": dataclasses.asdict(ppo_cfg),
        }
        for folder in [args.out, *([args.mirror] if args.mirror else [])]:
            folder.mkdir(parents=True, exist_ok=True)

            def dump(p: Path, data: dict[str, Any] = payload) -> None:
                with open(p, "wb") as f:
                    pickle.dump(data, f)

            _write_atomic(folder / "checkpoint.pkl", dump)
            arrays = actor_arrays(params)

            def dump_npz(p: Path, a: dict[str, np.ndarray] = arrays) -> None:
                with open(p, "wb") as f:
                    np.savez(f, **a)

            _write_atomic(folder / "actor_weights.npz", dump_npz)
            progress = {k: v for k, v in payload.items() if k != "params"}
            _write_atomic(folder / "progress.json", lambda p, d=progress: p.write_text(json.dumps(d, indent=1)))

    def policy_params_fn(current_step: int, make_policy: Any, params: Any) -> None:
        state["params"] = params  # saved by progress_fn, which brax calls right after

    def progress_fn(current_step: int, metrics: dict[str, Any]) -> None:
        now = time.time()
        elapsed = now - t_start
        if "training/sps" in metrics:  # end of an epoch (brax's own metrics): log, save, maybe stop
            if state["last_epoch_end"] is not None:
                state["epoch_s"] = now - state["last_epoch_end"]
            state["last_epoch_end"] = now
            state["steps"] = done_steps + current_step
            state["lr"] = float(metrics.get("training/learning_rate", ppo_cfg.learning_rate))
            record = {
                "env_steps": done_steps + current_step,
                "call": call_index,
                "wall_s": elapsed,
                "sps": float(metrics["training/sps"]),
                "learning_rate": state["lr"],
                "policy_loss": float(metrics.get("training/policy_loss", np.nan)),
                "v_loss": float(metrics.get("training/v_loss", np.nan)),
                "kl": float(metrics.get("training/kl_mean", np.nan)),
                "action_std": float(np.mean(actor_arrays(state["params"])["action_std"])),
            }
            history.append({"kind": "epoch", **record})
            print(
                f"[epoch] steps {record['env_steps']:>12,} | {record['sps']:>9,.0f} steps/s | "
                f"lr {record['learning_rate']:.2e} | kl {record['kl']:.4f} | std {record['action_std']:.3f} | "
                f"t {elapsed:5.0f} s",
                flush=True,
            )
            save(current_step, state["params"], state["lr"])
            # The first epoch includes compilation: estimate the next one from the logger's rate.
            epoch_estimate = state["epoch_s"] or ppo_cfg.steps_per_epoch / max(state["logger_sps"] or 1.0, 1.0)
            next_end = elapsed + epoch_estimate + 15.0
            if done_steps + current_step >= args.total_steps:
                raise StopTraining("step target reached")
            if next_end > args.time_budget_s:
                raise StopTraining(f"time budget: {elapsed:.0f} s used, one more epoch would end near {next_end:.0f} s")
            return
        # brax's episode logger: means over recently finished training episodes
        ep = {k.removeprefix("episode/"): float(v) for k, v in metrics.items()}
        state["logger_sps"] = ep.get("sps")
        record = {
            "kind": "episodes",
            "env_steps": done_steps + current_step,
            "call": call_index,
            "wall_s": elapsed,
            "reward_per_step": ep.get("reward_per_step", np.nan),
            "episode_length": ep.get("length", np.nan),
            "lin_vel_error": ep.get("lin_vel_error_per_step", np.nan),
            "ang_vel_error": ep.get("ang_vel_error_per_step", np.nan),
            "fall_rate": ep.get("fell", np.nan),
        }
        history.append(record)
        print(
            f"[episodes] steps {record['env_steps']:>12,} | reward/step {record['reward_per_step']:.4f} | "
            f"len {record['episode_length']:6.1f} | lin err {record['lin_vel_error']:.3f} m/s | "
            f"ang err {record['ang_vel_error']:.3f} rad/s | falls {record['fall_rate'] * 100:5.1f} %",
            flush=True,
        )

    restore = previous.get("params")
    lr0 = float(previous.get("learning_rate") or ppo_cfg.learning_rate)
    print(
        f"[setup] {ppo_cfg.num_envs} envs, {ppo_cfg.steps_per_iteration:,} steps/iteration, "
        f"{epochs} epochs of {ppo_cfg.steps_per_epoch:,} steps max this call, lr {lr0:.2e}",
        flush=True,
    )
    try:
        ppo.train(
            environment=env,
            num_timesteps=epochs * ppo_cfg.steps_per_epoch,
            num_evals=epochs + 1,
            episode_length=env_cfg.episode_steps,
            action_repeat=1,
            num_envs=ppo_cfg.num_envs,
            max_devices_per_host=1,
            learning_rate=lr0,
            entropy_cost=ppo_cfg.entropy_cost,
            discounting=ppo_cfg.discounting,
            gae_lambda=ppo_cfg.gae_lambda,
            unroll_length=ppo_cfg.unroll_length,
            batch_size=ppo_cfg.batch_size,
            num_minibatches=ppo_cfg.num_minibatches,
            num_updates_per_batch=ppo_cfg.num_updates_per_batch,
            normalize_observations=True,
            reward_scaling=1.0,
            clipping_epsilon=ppo_cfg.clipping_epsilon,
            clipping_epsilon_value=ppo_cfg.clipping_epsilon,
            max_grad_norm=ppo_cfg.max_grad_norm,
            vf_loss_coefficient=ppo_cfg.vf_loss_coefficient,
            learning_rate_schedule="ADAPTIVE_KL",
            desired_kl=ppo_cfg.desired_kl,
            network_factory=make_networks(ppo_cfg),
            seed=args.seed + 1000 * call_index,
            wrap_env_fn=wrap_env,
            randomization_fn=functools.partial(randomize, cfg=env_cfg, env=env),
            eval_env=_NoEvalEnv(env.observation_size),
            num_eval_envs=1,
            run_evals=False,
            log_training_metrics=True,
            training_metrics_steps=ppo_cfg.steps_per_epoch // 2,
            progress_fn=progress_fn,
            policy_params_fn=policy_params_fn,
            restore_params=restore,
        )
    except StopTraining as stop:
        print(f"[stop] {stop}")
    total = state["steps"]
    print(f"[done] {total:,} env steps in total; this call {time.time() - t_start:.0f} s; saved in {args.out}")


if __name__ == "__main__":
    main()
