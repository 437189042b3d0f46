"""Find the files of an Isaac Lab run from whatever a user points at.

Accepted: a run folder (``logs/rsl_rl/spot_flat/<date>/``), its ``exported/policy.onnx``, ``latest``
(the newest timestamped run under a logs root), or the name of a policy shipped in
``config/policies/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from spot_policy.core.errors import PolicyLoadError

RUN_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}")
CHECKPOINT = re.compile(r"^model_(\d+)\.pt$")
DEFAULT_LOGS_ROOT = Path("logs/rsl_rl/spot_flat")


@dataclass(frozen=True)
class RunFiles:
    run_dir: Path
    env_yaml: Path
    agent_yaml: Path | None
    onnx: Path
    newest_checkpoint: Path | None


def newest_run(logs_root: Path) -> Path:
    """The newest ``<YYYY-MM-DD_HH-MM-SS>[_name]`` folder (names sort by time)."""
    if not logs_root.is_dir():
        raise PolicyLoadError(
            logs_root, "logs root not found", "pass --logs-root logs/rsl_rl/<experiment> (the folder holding the runs)"
        )
    runs = sorted((p for p in logs_root.iterdir() if p.is_dir() and RUN_NAME.match(p.name)), key=lambda p: p.name)
    if not runs:
        raise PolicyLoadError(
            logs_root,
            "no run folders named <YYYY-MM-DD_HH-MM-SS> in it",
            "pass --logs-root logs/rsl_rl/<experiment>, the folder Isaac Lab writes runs into",
        )
    return runs[-1]


def newest_checkpoint(run_dir: Path) -> Path | None:
    found = [(int(m.group(1)), p) for p in run_dir.glob("model_*.pt") if (m := CHECKPOINT.match(p.name))]
    return max(found)[1] if found else None


def locate_run(target: str | Path, logs_root: Path | None = None, policies_dir: Path | None = None) -> RunFiles:
    """Resolve ``target`` to the run's files, or raise a one-line :class:`PolicyLoadError`."""
    path = Path(target).expanduser()
    if str(target) == "latest":
        run_dir = newest_run(logs_root or DEFAULT_LOGS_ROOT)
        onnx = run_dir / "exported" / "policy.onnx"
    elif path.suffix == ".onnx":
        onnx = path
        if not onnx.is_file():
            raise PolicyLoadError(onnx, "file not found", "check the path, or point at the run folder instead")
        run_dir = onnx.parent.parent if onnx.parent.name == "exported" else onnx.parent
    elif path.is_dir():
        run_dir, onnx = path, path / "exported" / "policy.onnx"
    elif policies_dir is not None and not path.is_absolute() and (policies_dir / path).is_dir():
        run_dir = policies_dir / path
        onnx = run_dir / "exported" / "policy.onnx"
    else:
        shipped = ""
        if policies_dir is not None and policies_dir.is_dir():
            names = sorted(p.name for p in policies_dir.iterdir() if p.is_dir())
            shipped = f", or a shipped policy ({', '.join(names)})" if names else ""
        raise PolicyLoadError(
            path, "no such run folder or file", f"point at an Isaac Lab run folder, its exported/policy.onnx{shipped}"
        )

    env_yaml = run_dir / "params" / "env.yaml"
    if not env_yaml.is_file():
        raise PolicyLoadError(
            env_yaml,
            "file not found (the run's environment config)",
            "point at the Isaac Lab run folder itself (logs/rsl_rl/<experiment>/<date>/), which has params/env.yaml",
        )
    checkpoint = newest_checkpoint(run_dir)
    if not onnx.is_file():
        hint = f" (newest checkpoint: {checkpoint.name})" if checkpoint else ""
        raise PolicyLoadError(
            onnx,
            f"file not found{hint}",
            "export the policy with Isaac Lab's play.py for this run (it writes exported/policy.onnx)",
        )
    agent_yaml = run_dir / "params" / "agent.yaml"
    return RunFiles(run_dir, env_yaml, agent_yaml if agent_yaml.is_file() else None, onnx, checkpoint)
