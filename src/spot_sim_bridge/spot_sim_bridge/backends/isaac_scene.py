"""The physics scene and Spot's spawn settings Isaac Lab trained with, for the Isaac Sim backend.

Read from the policy's ``params/env.yaml`` where it has them (``sim.gravity``, ``sim.physx.*``,
``scene.robot.spawn.articulation_props.*``, ``scene.robot.spawn.rigid_props.*``); every setting the
file lacks takes Isaac Lab's value for its Spot flat task (``Isaac-Velocity-Flat-Spot-v0``):
``PhysxCfg`` defaults in ``isaaclab/sim/simulation_cfg.py`` and ``SPOT_CFG`` in
``isaaclab_assets/robots/spot.py`` (docs/ISAAC_SIM.md names the commits). A setting given as
``null`` in the spawn properties leaves the USD asset's own value, as Isaac Lab does with ``None``.
Each value remembers where it came from, for the log and the doctor.

Contact friction is not read here: the bridge's ``friction`` parameter is the contact coefficient.
The materials reproduce the Spot task's arrangement (ground 1.0/1.0 with combine mode "multiply",
the robot's material with the randomized coefficient, also "multiply"), so the contact gets exactly
that coefficient, as in training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spot_policy.core.isaaclab_yaml import load_isaaclab_yaml

DEFAULT = "Isaac Lab Spot default"
#: Ground material of Isaac Lab's Spot task (``sim.physics_material`` and the terrain's), and the mode.
GROUND_FRICTION = 1.0
FRICTION_COMBINE_MODE = "multiply"
RESTITUTION_COMBINE_MODE = "multiply"

#: Isaac Lab's ``RigidBodyPropertiesCfg`` field -> PhysX USD attribute (``physxRigidBody:<name>``), with
#: Spot's value. Units as Isaac Lab and the USD schema use them: m/s, deg/s, 1/s.
RIGID_BODY_ATTRIBUTES: dict[str, tuple[str, float | bool]] = {
    "disable_gravity": ("disableGravity", False),
    "retain_accelerations": ("retainAccelerations", False),
    "linear_damping": ("linearDamping", 0.0),
    "angular_damping": ("angularDamping", 0.0),
    "max_linear_velocity": ("maxLinearVelocity", 1000.0),
    "max_angular_velocity": ("maxAngularVelocity", 1000.0),  # deg/s
    "max_depenetration_velocity": ("maxDepenetrationVelocity", 1.0),
}
#: ``SceneSettings`` fields read from ``sim.physx.<name>`` and ``scene.robot.spawn.articulation_props.<name>``.
PHYSX_SETTINGS = (
    "enable_ccd",
    "enable_stabilization",
    "bounce_threshold_velocity",
    "friction_offset_threshold",
    "friction_correlation_distance",
)
ARTICULATION_SETTINGS = (
    "enabled_self_collisions",
    "solver_position_iteration_count",
    "solver_velocity_iteration_count",
)
_MISSING = object()


@dataclass(frozen=True)
class SceneSettings:
    """What the backend applies to the physics scene and to Spot before the first step."""

    gravity_z: float = -9.81  # m/s^2 along the stage's z (up) axis
    solver_type: str = "TGS"
    enable_ccd: bool = False
    enable_stabilization: bool = False
    bounce_threshold_velocity: float = 0.5  # m/s
    friction_offset_threshold: float = 0.04  # m
    friction_correlation_distance: float = 0.025  # m
    # Spot's articulation root (None: keep the USD's value)
    enabled_self_collisions: bool | None = True
    solver_position_iteration_count: int | None = 4
    solver_velocity_iteration_count: int | None = 0
    #: ``physxRigidBody:<attribute>`` -> value for every rigid body of the robot (absent: keep the USD's)
    rigid_body: Mapping[str, float | bool] = field(
        default_factory=lambda: {attribute: value for attribute, value in RIGID_BODY_ATTRIBUTES.values()}
    )
    #: setting name -> where its value came from ("env.yaml sim.physx.enable_ccd" or the default)
    sources: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line per setting: value and source."""
        values = {
            "gravity_z": self.gravity_z,
            "solver_type": self.solver_type,
            "enable_ccd": self.enable_ccd,
            "enable_stabilization": self.enable_stabilization,
            "bounce_threshold_velocity": self.bounce_threshold_velocity,
            "friction_offset_threshold": self.friction_offset_threshold,
            "friction_correlation_distance": self.friction_correlation_distance,
            "enabled_self_collisions": self.enabled_self_collisions,
            "solver_position_iteration_count": self.solver_position_iteration_count,
            "solver_velocity_iteration_count": self.solver_velocity_iteration_count,
            **{f"physxRigidBody:{name}": value for name, value in self.rigid_body.items()},
        }
        return "\n".join(f"{name} = {value} ({self.sources.get(name, DEFAULT)})" for name, value in values.items())


def _lookup(tree: Any, dotted: str) -> Any:
    node = tree
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


class _Reader:
    """Reads typed values from an env.yaml tree, recording where each came from."""

    def __init__(self, tree: Any, file: str) -> None:
        self.tree, self.file = tree, file
        self.sources: dict[str, str] = {}

    def bad(self, dotted: str, raw: Any, want: str) -> ValueError:
        return ValueError(f"{self.file}: {dotted} is {raw!r}; fix: {want}, or remove it to use Isaac Lab's Spot value")

    def get(self, name: str, dotted: str, default: Any, kind: str, keep_if_null: bool = False) -> Any:
        raw = _lookup(self.tree, dotted)
        if raw is _MISSING or (raw is None and not keep_if_null):
            self.sources[name] = DEFAULT
            return default
        self.sources[name] = f"env.yaml {dotted}"
        if raw is None:
            self.sources[name] += ": null, the USD asset's own value"
            return None
        if kind == "bool":
            if not isinstance(raw, bool):
                raise self.bad(dotted, raw, "true or false")
            return raw
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw < 0:
            raise self.bad(dotted, raw, "a finite number >= 0")
        if kind == "count":
            if int(raw) != raw or raw > 255:
                raise self.bad(dotted, raw, "a whole number 0-255")
            return int(raw)
        return float(raw)


def scene_settings(env: Any, file: str = "env.yaml") -> SceneSettings:
    """Settings from a parsed env.yaml tree (None: no file, all defaults). ``ValueError`` names a bad value."""
    read = _Reader(env if env is not None else {}, file)
    defaults = SceneSettings()
    gravity = _lookup(read.tree, "sim.gravity")
    gravity_z = defaults.gravity_z
    read.sources["gravity_z"] = DEFAULT
    if gravity is not _MISSING and gravity is not None:
        values = list(gravity) if isinstance(gravity, list | tuple) else []
        if len(values) != 3 or not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            raise read.bad("sim.gravity", gravity, "three numbers (x, y, z) m/s^2")
        if values[0] != 0.0 or values[1] != 0.0:
            raise read.bad("sim.gravity", gravity, "gravity along z only, (0.0, 0.0, g)")
        gravity_z = float(values[2])
        read.sources["gravity_z"] = "env.yaml sim.gravity"
    solver = read.get("solver_type", "sim.physx.solver_type", 1, "count")
    if solver not in (0, 1):
        raise read.bad("sim.physx.solver_type", solver, "0 (PGS) or 1 (TGS)")
    rigid: dict[str, float | bool] = {}
    for cfg_name, (attribute, value) in RIGID_BODY_ATTRIBUTES.items():
        kind = "bool" if isinstance(value, bool) else "number"
        chosen = read.get(
            f"physxRigidBody:{attribute}", f"scene.robot.spawn.rigid_props.{cfg_name}", value, kind, keep_if_null=True
        )
        if chosen is not None:
            rigid[attribute] = chosen
    physx = {
        name: read.get(
            name, f"sim.physx.{name}", getattr(defaults, name), "bool" if name.startswith("enable") else "number"
        )
        for name in PHYSX_SETTINGS
    }
    articulation = {
        name: read.get(
            name,
            f"scene.robot.spawn.articulation_props.{name}",
            getattr(defaults, name),
            "bool" if name.startswith("enable") else "count",
            keep_if_null=True,
        )
        for name in ARTICULATION_SETTINGS
    }
    return SceneSettings(
        gravity_z=gravity_z,
        solver_type="TGS" if solver == 1 else "PGS",
        **physx,
        **articulation,
        rigid_body=rigid,
        sources=read.sources,
    )


def load_scene_settings(env_yaml: str | Path | None) -> SceneSettings:
    """Settings from a policy's env.yaml file, or Isaac Lab's Spot defaults when there is none."""
    if env_yaml is None or str(env_yaml) == "":
        return scene_settings(None)
    path = Path(env_yaml)
    try:
        tree = load_isaaclab_yaml(path)
    except (OSError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"{path}: cannot read it ({reason}); fix: the policy's params/env.yaml as Isaac Lab wrote it"
        ) from None
    return scene_settings(tree, str(path))
