"""Load a policy: locate the run, read its spec, open the ONNX model, check they agree."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from spot_policy.core.errors import PolicyLoadError
from spot_policy.core.isaaclab_yaml import load_isaaclab_yaml
from spot_policy.core.locate import RunFiles, locate_run
from spot_policy.core.onnx_policy import DEFAULT_PROVIDERS, OnnxPolicy
from spot_policy.core.policy_spec import PolicySpec, load_env_yaml, parse_env


@dataclass(frozen=True)
class LoadedPolicy:
    spec: PolicySpec
    model: OnnxPolicy
    files: RunFiles


def load_spec(files: RunFiles) -> PolicySpec:
    env = load_env_yaml(files.env_yaml)
    agent = None
    if files.agent_yaml is not None:
        try:
            agent = load_isaaclab_yaml(files.agent_yaml)
        except Exception:  # agent.yaml is optional: a broken one only loses clip_actions
            agent = None
    return PolicySpec(
        run_dir=files.run_dir, env_yaml=files.env_yaml, onnx_path=files.onnx, **parse_env(env, files.env_yaml, agent)
    )


def open_model(
    spec: PolicySpec,
    providers: Sequence[str],
    intra_op_threads: int,
    log: Callable[[str], None],
    info: Callable[[str], None] | None = None,
) -> OnnxPolicy:
    try:
        model = OnnxPolicy(spec.onnx_path, providers, intra_op_threads, log, info)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PolicyLoadError(
            spec.onnx_path, f"ONNX Runtime cannot load it ({first[:200]})", "re-export the policy (play.py writes it)"
        ) from exc
    if len(model.input_names) != 1 or len(model.output_names) < 1:
        raise PolicyLoadError(
            spec.onnx_path,
            f"has inputs {list(model.input_names)} and outputs {list(model.output_names)}",
            "export an actor with one input 'obs' [1, N] and one output 'actions' [1, 12]",
        )
    terms = " + ".join(f"{t.name} {t.stop - t.start}" for t in spec.obs_terms)
    if model.input_dim != spec.obs_dim:
        raise PolicyLoadError(
            spec.onnx_path,
            f"input '{model.input_names[0]}' {list(model.input_shape)} takes {model.input_dim} values but env.yaml's "
            f"observation terms give {spec.obs_dim} ({terms})",
            "use the policy.onnx exported from the same run as params/env.yaml",
        )
    if model.output_dim != spec.action_dim:
        raise PolicyLoadError(
            spec.onnx_path,
            f"output '{model.output_names[0]}' {list(model.output_shape)} gives {model.output_dim} values but the "
            f"action drives {spec.action_dim} joints",
            "use the policy.onnx exported from the same run as params/env.yaml",
        )
    return model


def load_policy(
    target: str | Path,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    intra_op_threads: int = 1,
    logs_root: Path | None = None,
    policies_dir: Path | None = None,
    log: Callable[[str], None] = print,
    info: Callable[[str], None] | None = None,
) -> LoadedPolicy:
    """``log``: warnings (a provider the user asked for is missing); ``info``: expected notes."""
    files = locate_run(target, logs_root, policies_dir)
    spec = load_spec(files)
    return LoadedPolicy(spec, open_model(spec, providers, intra_op_threads, log, info), files)
