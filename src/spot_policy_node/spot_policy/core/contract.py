"""The topic and joint-name contract shared by the policy node and every bridge.

Joints are always matched by *name*; the index maps in ``../shared/facts/SPOT.md`` are checks, not
an implementation. This module is the one place that knows Spot's joint names in each convention.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LEGS: tuple[str, ...] = ("fl", "fr", "hl", "hr")
LEG_JOINTS: tuple[str, ...] = ("hx", "hy", "kn")

#: Isaac Lab / Isaac Sim articulation order: what an Isaac Lab Spot policy's obs and actions use.
ISAAC_JOINT_ORDER: tuple[str, ...] = tuple(f"{leg}_{j}" for j in LEG_JOINTS for leg in LEGS)
#: Spot SDK order (robot state and joint commands), with this project's names (``fl_hx``).
SDK_JOINT_ORDER: tuple[str, ...] = tuple(f"{leg}_{j}" for leg in LEGS for j in LEG_JOINTS)

_LEG_LONG = {"fl": "front_left", "fr": "front_right", "hl": "rear_left", "hr": "rear_right"}
_JOINT_LONG = {"hx": "hip_x", "hy": "hip_y", "kn": "knee"}

#: Joint limits (rad) from Spot's published description (SPOT.md).
JOINT_LIMITS: dict[str, tuple[float, float]] = {
    "hx": (-0.785398, 0.785398),
    "hy": (-0.898845, 2.295108),
    "kn": (-2.7929, -0.2471),
}
HIP_EFFORT_LIMIT = 45.0  # N*m, hx and hy

# Topic names (relative, so a namespace can prefix them).
TOPIC_JOINT_STATES = "joint_states"
TOPIC_IMU = "imu/data"
TOPIC_ODOM = "odom"
TOPIC_CMD_VEL = "cmd_vel"
TOPIC_JOY = "joy"
TOPIC_JOINT_COMMAND = "joint_command"
TOPIC_DIAGNOSTICS = "diagnostics"
TOPIC_CLOCK = "clock"
#: Segment starts of a scripted run (JSON in std_msgs/String, latched), for cutting recordings.
TOPIC_PROFILE_SEGMENT = "profile/segment"

#: How a bridge's (sim or robot) command-loss line begins, in its events, diagnostics and log;
#: the jobs watch a bridge's log for it.
COMMAND_LOSS = "no joint_command for"

FRAME_ODOM = "odom"
FRAME_BASE = "base_link"
#: Spot's body link: the root of its URDF and the child of ``odom`` in ``/tf`` (as the Spot SDK and
#: spot_ros2 name it); ``base_link`` (REP-105) is a fixed frame at the same place.
FRAME_BODY = "body"
#: The URDF (std_msgs/String, transient local) and the transforms every bridge publishes.
TOPIC_ROBOT_DESCRIPTION = "robot_description"
TOPIC_TF = "/tf"
TOPIC_TF_STATIC = "/tf_static"


def sdk_name(joint: str) -> str:
    """``fl_hx`` -> ``fl.hx``, the name the Spot SDK uses."""
    return joint.replace("_", ".", 1)


def from_sdk_name(name: str) -> str:
    """``fl.hx`` -> ``fl_hx``."""
    return name.replace(".", "_", 1)


def urdf_name(joint: str) -> str:
    """``fl_hx`` -> ``front_left_hip_x``, the spot_ros2 / URDF name."""
    leg, j = joint.split("_")
    return f"{_LEG_LONG[leg]}_{_JOINT_LONG[j]}"


def joint_limits(joint: str) -> tuple[float, float]:
    """Position limits (rad) of a joint given by its short name (``fl_kn``)."""
    return JOINT_LIMITS[joint.split("_")[1]]


def is_spot_joint(name: str) -> bool:
    return name in ISAAC_JOINT_ORDER


def index_map(source: Sequence[str], target: Sequence[str]) -> list[int]:
    """Indices ``idx`` such that ``[source[i] for i in idx] == list(target)``.

    Raises ``KeyError`` naming the joints of ``target`` that ``source`` lacks.
    """
    where = {name: i for i, name in enumerate(source)}
    missing = [name for name in target if name not in where]
    if missing:
        raise KeyError(f"missing joints: {', '.join(missing)}")
    return [where[name] for name in target]


#: Every accepted spelling of a joint name -> its contract name (``fl.hx`` and
#: ``front_left_hip_x`` -> ``fl_hx``), so a bridge with another convention still maps by name.
_ALIASES: dict[str, str] = {
    alias: joint for joint in ISAAC_JOINT_ORDER for alias in (joint, sdk_name(joint), urdf_name(joint))
}


def canonical_joint_name(name: str) -> str | None:
    """The contract name of a joint given in any known convention, or None if it is not Spot's leg joint."""
    return _ALIASES.get(name)


class JointLayout:
    """Reads joint messages into one joint order: by name, in any naming convention and any order.

    Joints that are not Spot's leg joints (an arm, a gripper) are ignored. A message's name list is
    mapped to an index array once and cached (bounded, so a sender that changes its layout with
    every message cannot grow it).
    """

    _CACHE_SIZE = 32

    def __init__(self, order: Sequence[str]) -> None:
        self.order = tuple(order)
        self._cache: dict[tuple[str, ...], np.ndarray | str] = {}

    def take(self, names: Sequence[str], values: Sequence[float]) -> np.ndarray:
        """``values`` (one per name) in this order; ``ValueError`` says why a message is unusable."""
        layout = self._indices(tuple(names))
        if isinstance(layout, str):
            raise ValueError(layout)
        if len(values) != len(names):
            raise ValueError(f"{len(names)} names but {len(values)} positions")
        out = np.asarray(values, dtype=np.float64)[layout]
        if not np.all(np.isfinite(out)):
            bad = [self.order[i] for i in np.flatnonzero(~np.isfinite(out))]
            raise ValueError(f"non-finite position for {', '.join(bad)}")
        return out

    def _indices(self, names: tuple[str, ...]) -> np.ndarray | str:
        cached = self._cache.get(names)
        if cached is not None:
            return cached
        where: dict[str, int] = {}
        twice: list[str] = []
        for i, name in enumerate(names):
            joint = canonical_joint_name(name)
            if joint is None:
                continue
            if joint in where:
                twice.append(joint)
            where[joint] = i
        missing = [j for j in self.order if j not in where]
        result: np.ndarray | str
        if missing:
            result = f"missing joints {', '.join(missing)}"
        elif twice:
            result = f"joints given twice: {', '.join(twice)}"
        else:
            result = np.array([where[j] for j in self.order], dtype=np.intp)
        if len(self._cache) >= self._CACHE_SIZE:
            self._cache.clear()
        self._cache[names] = result
        return result
