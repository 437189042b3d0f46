"""Forward kinematics from a URDF: what ``robot_state_publisher`` computes, without ROS.

Every bridge turns its joint states into the leg links' transforms with this module, so ``/tf``
needs no robot_state_publisher (where one runs, it computes the same transforms from the same
``robot_description``). Only the URDF's kinematic tree is read (joints: type, parent, child,
origin, axis); revolute, continuous, prismatic and fixed joints are supported.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MOVING_TYPES = ("revolute", "continuous", "prismatic")
JOINT_TYPES = (*MOVING_TYPES, "fixed")


class UrdfError(ValueError):
    """The URDF cannot be read as a kinematic tree; the message names the element and the problem."""


def quat_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF ``rpy`` (fixed axes X, then Y, then Z) -> quaternion (x, y, z, w)."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return np.array(
        [
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy,
        ]
    )


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (x, y, z, w) quaternions, broadcast over leading axes."""
    ax, ay, az, aw = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        axis=-1,
    )


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vector ``v`` rotated by the (x, y, z, w) quaternion ``q``."""
    q = np.asarray(q, dtype=np.float64)
    u, w = q[:3], q[3]
    v = np.asarray(v, dtype=np.float64)
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


@dataclass(frozen=True)
class Transform:
    """A rigid transform: ``translation`` (m) and ``rotation`` (x, y, z, w) of a child in its parent."""

    translation: np.ndarray
    rotation: np.ndarray

    @staticmethod
    def identity() -> Transform:
        return Transform(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))

    def __mul__(self, other: Transform) -> Transform:
        return Transform(
            self.translation + quat_rotate(self.rotation, other.translation),
            quat_multiply(self.rotation, other.rotation),
        )

    def apply(self, point: Sequence[float]) -> np.ndarray:
        return self.translation + quat_rotate(self.rotation, np.asarray(point, dtype=np.float64))


@dataclass(frozen=True)
class Joint:
    name: str
    type: str
    parent: str
    child: str
    origin: Transform
    axis: np.ndarray


class KinematicTree:
    """The joints of a URDF, parents before children, and the transforms they make."""

    def __init__(self, root: str, joints: Sequence[Joint]) -> None:
        self.root = root
        self.joints = tuple(joints)
        self.moving = tuple(j for j in self.joints if j.type in MOVING_TYPES)
        self.fixed = tuple(j for j in self.joints if j.type == "fixed")
        self.links = (root, *(j.child for j in self.joints))
        self._origin_t = np.array([j.origin.translation for j in self.moving]).reshape(-1, 3)
        self._origin_q = np.array([j.origin.rotation for j in self.moving]).reshape(-1, 4)
        self._axes = np.array([j.axis for j in self.moving]).reshape(-1, 3)
        self._prismatic = np.array([j.type == "prismatic" for j in self.moving], dtype=bool)
        # Spot's joint frames are not rotated against their parents: skip the product then.
        self._plain = bool(np.allclose(self._origin_q, [0.0, 0.0, 0.0, 1.0]) and not self._prismatic.any())

    @classmethod
    def from_urdf(cls, text: str) -> KinematicTree:
        """Parse a URDF document (the text of ``robot_description``)."""
        try:
            robot = ET.fromstring(text)
        except ET.ParseError as exc:
            raise UrdfError(f"URDF is not valid XML: {exc}") from None
        if robot.tag != "robot":
            raise UrdfError(f"URDF root element is <{robot.tag}>, expected <robot>")
        links = [link.get("name", "") for link in robot.findall("link")]
        if not links or not all(links):
            raise UrdfError("URDF has no links, or a <link> without a name")
        joints: dict[str, Joint] = {}
        for element in robot.findall("joint"):
            joint = _parse_joint(element)
            if joint.child in joints:
                raise UrdfError(f"link '{joint.child}' is the child of two joints")
            for link in (joint.parent, joint.child):
                if link not in links:
                    raise UrdfError(f"joint '{joint.name}' names link '{link}', which the URDF does not define")
            joints[joint.child] = joint
        roots = [link for link in links if link not in joints]
        if len(roots) != 1:
            raise UrdfError(f"URDF must have exactly one root link, found {len(roots)}: {', '.join(roots)}")
        ordered: list[Joint] = []
        frontier = [roots[0]]
        while frontier:
            parent = frontier.pop(0)
            children = [j for j in joints.values() if j.parent == parent]
            ordered += children
            frontier += [j.child for j in children]
        if len(ordered) != len(joints):
            raise UrdfError("URDF joints form a loop or a detached chain")
        return cls(roots[0], ordered)

    @property
    def moving_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.moving)

    def joint_transforms(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each moving joint's child-in-parent transform at ``positions`` (in :attr:`moving` order):
        translations (n, 3) and rotations (n, 4, x y z w); what ``/tf`` carries for these joints."""
        q = np.asarray(positions, dtype=np.float64)
        half = q * 0.5 if self._plain else np.where(self._prismatic, 0.0, q) * 0.5
        motion_q = np.empty((len(q), 4))
        motion_q[:, :3] = self._axes * np.sin(half)[:, None]
        motion_q[:, 3] = np.cos(half)
        if self._plain:
            return self._origin_t.copy(), motion_q
        rotations = quat_multiply(self._origin_q, motion_q)
        translations = self._origin_t.copy()
        if self._prismatic.any():
            slide = self._axes * np.where(self._prismatic, q, 0.0)[:, None]
            translations += np.array([quat_rotate(r, s) for r, s in zip(self._origin_q, slide, strict=True)])
        return translations, rotations

    def link_poses(self, positions: Mapping[str, float], root_pose: Transform | None = None) -> dict[str, Transform]:
        """Every link's pose in the root's parent frame (``root_pose``: the root in it; default identity)."""
        missing = [name for name in self.moving_names if name not in positions]
        if missing:
            raise KeyError(f"no position for joints {', '.join(missing)}")
        q = np.array([positions[name] for name in self.moving_names], dtype=np.float64)
        translations, rotations = self.joint_transforms(q)
        local = {j.child: Transform(t, r) for j, t, r in zip(self.moving, translations, rotations, strict=True)}
        local.update({j.child: j.origin for j in self.fixed})
        poses = {self.root: root_pose or Transform.identity()}
        for joint in self.joints:
            poses[joint.child] = poses[joint.parent] * local[joint.child]
        return poses


def _floats(text: str | None, count: int, default: Sequence[float], where: str) -> np.ndarray:
    if text is None:
        return np.array(default, dtype=np.float64)
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        raise UrdfError(f"{where} is '{text}', expected {count} numbers") from None
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise UrdfError(f"{where} is '{text}', expected {count} finite numbers")
    return np.array(values)


def _parse_joint(element: ET.Element) -> Joint:
    name = element.get("name", "")
    kind = element.get("type", "")
    if not name:
        raise UrdfError("a <joint> has no name")
    if kind not in JOINT_TYPES:
        raise UrdfError(f"joint '{name}' has type '{kind}'; supported: {', '.join(JOINT_TYPES)}")
    parent, child = element.find("parent"), element.find("child")
    if parent is None or child is None or not parent.get("link") or not child.get("link"):
        raise UrdfError(f"joint '{name}' needs <parent link=...> and <child link=...>")
    origin = element.find("origin")
    xyz = _floats(origin.get("xyz") if origin is not None else None, 3, (0, 0, 0), f"joint '{name}' origin xyz")
    rpy = _floats(origin.get("rpy") if origin is not None else None, 3, (0, 0, 0), f"joint '{name}' origin rpy")
    axis_element = element.find("axis")
    axis = _floats(axis_element.get("xyz") if axis_element is not None else None, 3, (1, 0, 0), f"joint '{name}' axis")
    norm = float(np.linalg.norm(axis))
    if kind in MOVING_TYPES and norm < 1e-9:
        raise UrdfError(f"joint '{name}' has a zero axis")
    return Joint(
        name=name,
        type=kind,
        parent=str(parent.get("link")),
        child=str(child.get("link")),
        origin=Transform(xyz, quat_from_rpy(*rpy)),
        axis=axis / norm if norm else axis,
    )
