"""The policy spec: everything a deployment must know about a trained Isaac Lab Spot policy.

Read from the run folder's ``params/env.yaml`` (and ``params/agent.yaml`` when present). Every
check that can fail does so here, at load time, with a :class:`PolicyLoadError` that names the
file, the problem and the fix, so the node never starts with a policy it cannot honour.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from spot_policy.core import contract
from spot_policy.core.errors import PolicyLoadError
from spot_policy.core.isaaclab_yaml import callable_name, load_isaaclab_yaml

#: Observation functions this project computes, with their size per step.
SUPPORTED_TERMS: dict[str, int] = {
    "base_lin_vel": 3,
    "base_ang_vel": 3,
    "projected_gravity": 3,
    "generated_commands": 3,
    "joint_pos_rel": 12,
    "joint_vel_rel": 12,
    "last_action": 12,
}
SUPPORTED_ACTIONS = ("JointPositionAction",)
#: Keys of an observation group that are settings, not terms.
_GROUP_SETTINGS = {
    "concatenate_terms",
    "concatenate_dim",
    "enable_corruption",
    "history_length",
    "flatten_history_dim",
    "nan_check_per_term",
    "nan_policy",
}
COMMAND_AXES = ("lin_vel_x", "lin_vel_y", "ang_vel_z")


@dataclass(frozen=True)
class ObsTerm:
    """One observation term, placed at ``[start, stop)`` of the observation vector."""

    name: str
    func: str
    source: str
    dim: int
    history: int
    scale: np.ndarray | None
    clip: tuple[float, float] | None
    start: int
    stop: int


@dataclass(frozen=True)
class ActionSpec:
    """How raw network outputs become joint targets: target = offset + scale * action."""

    joint_names: tuple[str, ...]
    scale: np.ndarray
    offset: np.ndarray
    clip: np.ndarray | None  # (12, 2) bounds on the processed target, Isaac Lab's action clip
    raw_clip: float | None  # RSL-RL's clip_actions on the raw output (agent.yaml)


@dataclass(frozen=True)
class PolicySpec:
    run_dir: Path
    env_yaml: Path
    onnx_path: Path
    joint_names: tuple[str, ...]  # articulation order (observations use it)
    default_joint_pos: np.ndarray
    stiffness: np.ndarray
    damping: np.ndarray
    effort_limit: tuple[float | None, ...]  # None: angle-dependent (Spot's knee table)
    joint_lower: np.ndarray
    joint_upper: np.ndarray
    obs_terms: tuple[ObsTerm, ...]
    obs_dim: int
    action: ActionSpec
    command_ranges: dict[str, tuple[float, float]]
    physics_dt: float
    decimation: int
    notes: tuple[str, ...] = field(default=())

    @property
    def control_dt(self) -> float:
        return self.physics_dt * self.decimation

    @property
    def control_rate_hz(self) -> float:
        return 1.0 / self.control_dt

    @property
    def action_dim(self) -> int:
        return len(self.action.joint_names)

    def term(self, func: str) -> ObsTerm | None:
        return next((t for t in self.obs_terms if t.func == func), None)


def _get(tree: Any, dotted: str, file: Path, fix: str) -> Any:
    node = tree
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise PolicyLoadError(file, f"key '{dotted}' is missing", fix)
        node = node[key]
    return node


def _resolve_per_joint(
    value: Any, joints: Sequence[str], what: str, file: Path, default: Any = None, strict: bool = True
) -> dict[str, Any]:
    """A scalar or a ``{regex: value}`` dict -> value per joint (regexes match the full name)."""
    if not isinstance(value, Mapping):
        return {j: value for j in joints}
    out: dict[str, Any] = {}
    for pattern, v in value.items():
        try:
            matched = [j for j in joints if re.fullmatch(str(pattern), j)]
        except re.error as exc:
            raise PolicyLoadError(file, f"{what}: '{pattern}' is not a valid regex ({exc})", "fix the regex") from exc
        if not matched and strict:
            raise PolicyLoadError(
                file,
                f"{what}: '{pattern}' matches none of Spot's joints ({', '.join(joints)})",
                "use Spot's joint names (fl_hx ... hr_kn) in the robot config",
            )
        for j in matched:
            if j in out:
                raise PolicyLoadError(
                    file, f"{what}: joint {j} matches more than one regex", "make the regexes disjoint"
                )
            out[j] = v
    for j in joints:
        out.setdefault(j, default)
    return out


def _resolve_joint_list(patterns: Any, file: Path, what: str, preserve_order: bool) -> tuple[str, ...]:
    if isinstance(patterns, str):
        patterns = [patterns]
    if patterns is None:
        patterns = [".*"]
    joints = contract.ISAAC_JOINT_ORDER
    unknown = [p for p in patterns if not any(re.fullmatch(str(p), j) for j in joints)]
    if unknown:
        raise PolicyLoadError(
            file,
            f"{what} names joints that are not Spot's: {', '.join(map(str, unknown))}",
            f"use Spot's joint names ({', '.join(joints)}) or a regex over them",
        )
    if preserve_order:
        ordered: list[str] = []
        for p in patterns:
            ordered += [j for j in joints if re.fullmatch(str(p), j) and j not in ordered]
    else:
        ordered = [j for j in joints if any(re.fullmatch(str(p), j) for p in patterns)]
    if len(ordered) != len(joints):
        missing = [j for j in joints if j not in ordered]
        raise PolicyLoadError(
            file, f"{what} leaves out joints {', '.join(missing)}", "this project drives all 12 leg joints: use '.*'"
        )
    return tuple(ordered)


def _as_pair(value: Any, file: Path, what: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise PolicyLoadError(file, f"{what} is {value!r}, not a (min, max) pair", "write it as [min, max]") from exc
    if not lo <= hi:
        raise PolicyLoadError(file, f"{what} has min {lo} > max {hi}", "swap the bounds")
    return lo, hi


def _parse_obs_terms(group: Any, file: Path) -> tuple[tuple[ObsTerm, ...], int]:
    if not isinstance(group, Mapping):
        raise PolicyLoadError(file, "observations.policy is not a mapping", "export env.yaml from Isaac Lab again")
    if group.get("concatenate_terms", True) is False:
        raise PolicyLoadError(
            file, "observations.policy.concatenate_terms is false", "the policy must take one flat vector: set it true"
        )
    if group.get("flatten_history_dim", True) is False:
        raise PolicyLoadError(
            file, "observations.policy.flatten_history_dim is false", "set it true: the policy takes one flat vector"
        )
    group_history = group.get("history_length")
    terms: list[ObsTerm] = []
    start = 0
    supported = ", ".join(SUPPORTED_TERMS)
    for name, cfg in group.items():
        if name in _GROUP_SETTINGS or cfg is None:
            continue
        if not isinstance(cfg, Mapping) or "func" not in cfg:
            continue
        source = callable_name(cfg["func"]) or repr(cfg["func"])
        func = source.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
        if func not in SUPPORTED_TERMS:
            raise PolicyLoadError(
                file,
                f"observation term '{name}' (func {source}) is not supported",
                f"train with the supported terms only: {supported}",
            )
        dim = SUPPORTED_TERMS[func]
        params = cfg.get("params") or {}
        asset = params.get("asset_cfg") if isinstance(params, Mapping) else None
        if isinstance(asset, Mapping) and asset.get("joint_names") not in (None, ".*", [".*"]):
            _resolve_joint_list(asset["joint_names"], file, f"observation term '{name}' asset_cfg.joint_names", False)
        if func == "generated_commands" and isinstance(params, Mapping):
            command_name = params.get("command_name", "base_velocity")
            if command_name != "base_velocity":
                raise PolicyLoadError(
                    file,
                    f"observation term '{name}' reads command '{command_name}'",
                    "this project drives the 'base_velocity' command (vx, vy, wz) from cmd_vel",
                )
        history = int(group_history if group_history not in (None, 0) else (cfg.get("history_length") or 0))
        if history < 0:
            raise PolicyLoadError(file, f"observation term '{name}' has history_length {history}", "use 0 or more")
        scale = cfg.get("scale")
        scale_arr = None
        if scale is not None:
            if np.ndim(scale) > 1 or np.size(scale) not in (1, dim):
                raise PolicyLoadError(
                    file,
                    f"observation term '{name}' has scale {scale!r} for {dim} values",
                    f"use a scalar or {dim} values",
                )
            scale_arr = np.broadcast_to(np.asarray(scale, dtype=np.float32), (dim,)).copy()
        clip = _as_pair(cfg["clip"], file, f"observation term '{name}' clip") if cfg.get("clip") else None
        size = dim * max(history, 1)
        terms.append(ObsTerm(name, func, source, dim, history, scale_arr, clip, start, start + size))
        start += size
    if not terms:
        raise PolicyLoadError(file, "observations.policy has no terms", "export env.yaml from the training run")
    return tuple(terms), start


def _parse_action(actions: Any, file: Path, default_pos: np.ndarray, raw_clip: float | None) -> ActionSpec:
    if not isinstance(actions, Mapping) or not actions:
        raise PolicyLoadError(file, "key 'actions' has no action term", "export env.yaml from the training run")
    terms = [(n, c) for n, c in actions.items() if c is not None]
    for name, cfg in terms:
        cls = callable_name(cfg.get("class_type")) if isinstance(cfg, Mapping) else None
        if not cls or cls.rsplit(":", 1)[-1].rsplit(".", 1)[-1] not in SUPPORTED_ACTIONS:
            raise PolicyLoadError(
                file,
                f"action term '{name}' (class {cls}) is not supported",
                f"use one joint-position action over all legs ({', '.join(SUPPORTED_ACTIONS)})",
            )
    if len(terms) != 1:
        raise PolicyLoadError(
            file, f"{len(terms)} action terms ({', '.join(n for n, _ in terms)})", "use a single JointPositionAction"
        )
    name, cfg = terms[0]
    joints = _resolve_joint_list(
        cfg.get("joint_names", [".*"]), file, f"actions.{name}.joint_names", bool(cfg.get("preserve_order", False))
    )
    order = contract.index_map(contract.ISAAC_JOINT_ORDER, joints)
    scale = _resolve_per_joint(cfg.get("scale", 1.0), joints, f"actions.{name}.scale", file, default=1.0)
    if cfg.get("use_default_offset", False):
        offset = default_pos[order]
    else:
        offset_map = _resolve_per_joint(cfg.get("offset", 0.0), joints, f"actions.{name}.offset", file, default=0.0)
        offset = np.array([float(offset_map[j]) for j in joints], dtype=np.float64)
    clip_cfg = cfg.get("clip")
    clip = None
    if clip_cfg:
        bounds = _resolve_per_joint(clip_cfg, joints, f"actions.{name}.clip", file, default=(-np.inf, np.inf))
        clip = np.array([_as_pair(bounds[j], file, f"actions.{name}.clip[{j}]") for j in joints])
    return ActionSpec(
        joint_names=joints,
        scale=np.array([float(scale[j]) for j in joints], dtype=np.float64),
        offset=np.asarray(offset, dtype=np.float64),
        clip=clip,
        raw_clip=raw_clip,
    )


def _float(value: Any, file: Path, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise PolicyLoadError(file, f"{what} is {value!r}, not a number", f"set {what} to a number") from exc


def parse_env(env: Any, env_yaml: Path, agent: Any = None) -> dict[str, Any]:
    """Turn a parsed env.yaml (and agent.yaml) into the spec's fields (everything but paths)."""
    fix = "export env.yaml from an Isaac Lab velocity task (params/env.yaml of the run)"
    if not isinstance(env, Mapping):
        raise PolicyLoadError(env_yaml, "is not a YAML mapping", fix)
    joints = contract.ISAAC_JOINT_ORDER
    physics_dt = _float(_get(env, "sim.dt", env_yaml, fix), env_yaml, "sim.dt")
    decimation = int(_float(_get(env, "decimation", env_yaml, fix), env_yaml, "decimation"))
    if physics_dt <= 0 or decimation < 1:
        raise PolicyLoadError(env_yaml, f"sim.dt {physics_dt} / decimation {decimation}", "use dt > 0, decimation >= 1")

    robot = _get(env, "scene.robot", env_yaml, fix)
    init_pos = _get(robot, "init_state.joint_pos", env_yaml, fix) if isinstance(robot, Mapping) else None
    defaults = _resolve_per_joint(init_pos, joints, "scene.robot.init_state.joint_pos", env_yaml, default=0.0)
    default_pos = np.array([_float(defaults[j], env_yaml, f"default joint_pos[{j}]") for j in joints])

    actuators = _get(robot, "actuators", env_yaml, fix)
    stiffness: dict[str, float] = {}
    damping: dict[str, float] = {}
    effort: dict[str, float | None] = {}
    for group, cfg in (actuators or {}).items():
        if not isinstance(cfg, Mapping):
            continue
        exprs = cfg.get("joint_names_expr") or []
        members = tuple(j for j in joints if any(re.fullmatch(str(p), j) for p in exprs))
        if not members:
            raise PolicyLoadError(
                env_yaml,
                f"actuators.{group}.joint_names_expr {cfg.get('joint_names_expr')} matches none of Spot's joints",
                "use Spot's joint names (fl_hx ... hr_kn)",
            )
        limit = cfg.get("effort_limit", cfg.get("effort_limit_sim"))
        for table, key, what in ((stiffness, "stiffness", "stiffness"), (damping, "damping", "damping")):
            values = _resolve_per_joint(cfg.get(key), members, f"actuators.{group}.{what}", env_yaml, strict=False)
            for j, v in values.items():
                if v is None:
                    raise PolicyLoadError(env_yaml, f"actuators.{group}.{what} has no value for {j}", f"set {what}")
                table[j] = _float(v, env_yaml, f"actuators.{group}.{what}[{j}]")
        for j, v in _resolve_per_joint(
            limit, members, f"actuators.{group}.effort_limit", env_yaml, strict=False
        ).items():
            effort[j] = None if v is None else _float(v, env_yaml, f"actuators.{group}.effort_limit[{j}]")
    uncovered = [j for j in joints if j not in stiffness]
    if uncovered:
        raise PolicyLoadError(
            env_yaml, f"no actuator group drives {', '.join(uncovered)}", "add them to scene.robot.actuators"
        )

    obs_terms, obs_dim = _parse_obs_terms(_get(env, "observations.policy", env_yaml, fix), env_yaml)

    raw_clip = None
    if isinstance(agent, Mapping) and agent.get("clip_actions") is not None:
        raw_clip = abs(_float(agent["clip_actions"], env_yaml, "agent.yaml clip_actions"))
    action = _parse_action(_get(env, "actions", env_yaml, fix), env_yaml, default_pos, raw_clip)
    if any(t.func in ("last_action",) and t.dim != len(action.joint_names) for t in obs_terms):
        raise PolicyLoadError(env_yaml, "last_action size differs from the action size", "use one 12-joint action")

    ranges_node = _get(env, "commands.base_velocity.ranges", env_yaml, fix)
    command_ranges = {
        axis: _as_pair(_get(ranges_node, axis, env_yaml, fix), env_yaml, f"commands.base_velocity.ranges.{axis}")
        for axis in COMMAND_AXES
    }
    notes = []
    if _get(env, "observations.policy", env_yaml, fix).get("enable_corruption"):
        notes.append("observation noise was enabled in this env.yaml; deployment adds none (as Isaac Lab's play does)")
    lower, upper = (np.array([contract.joint_limits(j)[k] for j in joints]) for k in (0, 1))
    return {
        "joint_names": joints,
        "default_joint_pos": default_pos,
        "stiffness": np.array([stiffness[j] for j in joints]),
        "damping": np.array([damping[j] for j in joints]),
        "effort_limit": tuple(effort.get(j) for j in joints),
        "joint_lower": lower,
        "joint_upper": upper,
        "obs_terms": obs_terms,
        "obs_dim": obs_dim,
        "action": action,
        "command_ranges": command_ranges,
        "physics_dt": physics_dt,
        "decimation": decimation,
        "notes": tuple(notes),
    }


def load_env_yaml(env_yaml: Path) -> Any:
    if not env_yaml.is_file():
        raise PolicyLoadError(
            env_yaml,
            "file not found",
            "point at an Isaac Lab run folder (it has params/env.yaml) or an exported/policy.onnx inside one",
        )
    try:
        return load_isaaclab_yaml(env_yaml)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyLoadError(
            env_yaml, f"is not valid YAML{line} ({problem})", "restore the file Isaac Lab wrote for the run"
        ) from exc
