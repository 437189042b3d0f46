"""Spot's URDF, generated from the MJCF (``spot.xml``): one source of truth for both.

The URDF is what ROS tools read (``robot_description``: RViz2's RobotModel, robot_state_publisher,
Foxglove's 3D panel); MuJoCo reads the MJCF. Every number in ``spot.urdf`` comes from MuJoCo's
compiled model of ``spot.xml``: link frames, joint axes and limits, masses, centres of mass and
inertias, collision and visual shapes. Regenerate after editing the MJCF (a test fails until then):

    python -m spot_sim_bridge.model.urdf            # rewrites model/spot.urdf

Names follow the topic contract: the root link is ``body`` (the MJCF's ``base_link`` body), leg
links keep the MJCF's body names (``fl_hip``, ``fl_uleg``, ``fl_lleg``), joints are ``fl_hx`` …;
fixed frames: ``base_link`` (REP-105, at the body), ``imu`` (the IMU site) and ``fl_foot`` …
(the foot sphere centres). URDF has no capsule: a capsule becomes a cylinder and two spheres.
"""

from __future__ import annotations

import argparse
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco
import numpy as np

from spot_policy.core import contract
from spot_sim_bridge.model import SPOT_MJCF, SPOT_URDF, load_knee_torque_table

#: The MJCF's root body, named ``body`` in the URDF (the contract's frame name).
MJCF_ROOT_BODY = "base_link"
#: Revolute joints need a velocity limit in URDF; the model has none (the PD law limits torque only).
UNLIMITED_VELOCITY = 100.0  # rad/s
HEADER = (
    "Boston Dynamics Spot for ROS tools. GENERATED from spot.xml by spot_sim_bridge.model.urdf; "
    "do not edit (python -m spot_sim_bridge.model.urdf regenerates it)."
)


def link_name(model: mujoco.MjModel, body: int) -> str:
    name = model.body(body).name
    return contract.FRAME_BODY if name == MJCF_ROOT_BODY else name


def foot_link(leg: str) -> str:
    return f"{leg}_foot"


def _num(value: float) -> str:
    text = f"{float(value):.9g}" if abs(value) > 1e-12 else "0"
    return "0" if text in ("-0", "0") else text


def _vec(values: np.ndarray) -> str:
    return " ".join(_num(v) for v in values)


def rpy_from_quat_wxyz(quat: np.ndarray) -> np.ndarray:
    """MuJoCo (w, x, y, z) -> URDF rpy (fixed axes X, Y, Z)."""
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, np.asarray(quat, dtype=np.float64))
    r = mat.reshape(3, 3)
    pitch = math.asin(max(-1.0, min(1.0, -r[2, 0])))
    if abs(r[2, 0]) < 1.0 - 1e-12:
        roll = math.atan2(r[2, 1], r[2, 2])
        yaw = math.atan2(r[1, 0], r[0, 0])
    else:  # gimbal lock: all of the rotation about z
        roll, yaw = 0.0, math.atan2(-r[0, 1], r[1, 1])
    return np.array([roll, pitch, yaw])


def _origin(parent: ET.Element, pos: np.ndarray, quat_wxyz: np.ndarray | None = None) -> None:
    rpy = np.zeros(3) if quat_wxyz is None else rpy_from_quat_wxyz(quat_wxyz)
    ET.SubElement(parent, "origin", xyz=_vec(pos), rpy=_vec(rpy))


def _geometry(model: mujoco.MjModel, geom: int) -> list[tuple[np.ndarray, np.ndarray, str, dict[str, str]]]:
    """(pos, quat, URDF shape, attributes) pieces of one MuJoCo geom, in its body's frame."""
    kind, size = model.geom_type[geom], model.geom_size[geom]
    pos, quat = model.geom_pos[geom], model.geom_quat[geom]
    if kind == mujoco.mjtGeom.mjGEOM_BOX:
        return [(pos, quat, "box", {"size": _vec(2 * size)})]
    if kind == mujoco.mjtGeom.mjGEOM_SPHERE:
        return [(pos, quat, "sphere", {"radius": _num(size[0])})]
    if kind == mujoco.mjtGeom.mjGEOM_CYLINDER:
        return [(pos, quat, "cylinder", {"radius": _num(size[0]), "length": _num(2 * size[1])})]
    if kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
        axis = np.zeros(9)
        mujoco.mju_quat2Mat(axis, quat)
        along = axis.reshape(3, 3)[:, 2] * size[1]
        sphere = {"radius": _num(size[0])}
        return [
            (pos, quat, "cylinder", {"radius": _num(size[0]), "length": _num(2 * size[1])}),
            (pos + along, quat, "sphere", sphere),
            (pos - along, quat, "sphere", sphere),
        ]
    raise ValueError(f"geom {geom} of body '{model.body(model.geom_bodyid[geom]).name}': type {kind} has no URDF shape")


def _material(model: mujoco.MjModel, geom: int) -> tuple[str, str]:
    """(name, rgba text) of a geom's colour: its MJCF material's, else its own."""
    material = int(model.geom_matid[geom])
    rgba = model.mat_rgba[material] if material >= 0 else model.geom_rgba[geom]
    name = model.material(material).name if material >= 0 else f"geom_{geom}"
    return name, " ".join(f"{float(v):.4g}" for v in rgba)


def _add_link(robot: ET.Element, model: mujoco.MjModel, body: int) -> None:
    link = ET.SubElement(robot, "link", name=link_name(model, body))
    inertial = ET.SubElement(link, "inertial")
    _origin(inertial, model.body_ipos[body], model.body_iquat[body])
    ET.SubElement(inertial, "mass", value=_num(model.body_mass[body]))
    ixx, iyy, izz = model.body_inertia[body]
    zero = "0"
    ET.SubElement(inertial, "inertia", ixx=_num(ixx), ixy=zero, ixz=zero, iyy=_num(iyy), iyz=zero, izz=_num(izz))
    for geom in np.flatnonzero(model.geom_bodyid == body):
        group = model.geom_group[geom]
        if group not in (2, 3):  # 2: visual, 3: collision (spot.xml's classes)
            continue
        for pos, quat, shape, attrs in _geometry(model, int(geom)):
            element = ET.SubElement(link, "visual" if group == 2 else "collision")
            _origin(element, pos, quat)
            ET.SubElement(ET.SubElement(element, "geometry"), shape, **attrs)
            if group == 2:
                name, rgba = _material(model, int(geom))
                ET.SubElement(ET.SubElement(element, "material", name=name), "color", rgba=rgba)


def _effort_limit(joint: str) -> float:
    if joint.endswith("_kn"):
        return float(load_knee_torque_table()[1].max())
    return contract.HIP_EFFORT_LIMIT


def _add_fixed(robot: ET.Element, parent: str, child: str, pos: np.ndarray) -> None:
    ET.SubElement(robot, "link", name=child)
    joint = ET.SubElement(robot, "joint", name=f"{child}_joint", type="fixed")
    ET.SubElement(joint, "parent", link=parent)
    ET.SubElement(joint, "child", link=child)
    _origin(joint, pos)


def urdf_from_mjcf(path: Path = SPOT_MJCF) -> str:
    """The URDF text of the MJCF at ``path`` (MuJoCo compiles it: defaults, fromto and all)."""
    model = mujoco.MjModel.from_xml_path(str(path))
    robot = ET.Element("robot", name="spot")
    robot.append(ET.Comment(f" {HEADER} "))
    for body in range(1, model.nbody):
        _add_link(robot, model, body)
        parent = model.body_parentid[body]
        if parent == 0:
            continue  # the floating base: odom -> body comes from the bridge's odometry
        joints = np.flatnonzero(model.jnt_bodyid == body)
        if len(joints) != 1 or model.jnt_type[joints[0]] != mujoco.mjtJoint.mjJNT_HINGE:
            raise ValueError(f"body '{model.body(body).name}' must have exactly one hinge joint for the URDF")
        j = int(joints[0])
        if np.any(model.jnt_pos[j] != 0):
            raise ValueError(f"joint '{model.joint(j).name}' is off its body's origin; URDF joints sit at the child's")
        joint = ET.SubElement(robot, "joint", name=model.joint(j).name, type="revolute")
        ET.SubElement(joint, "parent", link=link_name(model, int(parent)))
        ET.SubElement(joint, "child", link=link_name(model, body))
        _origin(joint, model.body_pos[body], model.body_quat[body])
        ET.SubElement(joint, "axis", xyz=_vec(model.jnt_axis[j]))
        lower, upper = model.jnt_range[j]
        ET.SubElement(
            joint,
            "limit",
            lower=_num(lower),
            upper=_num(upper),
            effort=_num(_effort_limit(model.joint(j).name)),
            velocity=_num(UNLIMITED_VELOCITY),
        )
    _add_fixed(robot, contract.FRAME_BODY, contract.FRAME_BASE, np.zeros(3))
    site = model.site("imu")
    _add_fixed(robot, link_name(model, int(model.site_bodyid[site.id])), "imu", model.site_pos[site.id])
    for leg in contract.LEGS:
        foot = model.geom(f"{leg}_foot")
        body = int(model.geom_bodyid[foot.id])
        _add_fixed(robot, link_name(model, body), foot_link(leg), model.geom_pos[foot.id])
    ET.indent(robot, space="  ")
    return '<?xml version="1.0"?>\n' + ET.tostring(robot, encoding="unicode") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write Spot's URDF, generated from the MJCF.")
    parser.add_argument("--out", type=Path, default=SPOT_URDF, help=f"file to write (default: {SPOT_URDF})")
    args = parser.parse_args(argv)
    args.out.write_text(urdf_from_mjcf())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
