"""Spot's URDF against the MJCF it is generated from, read back by MuJoCo's own URDF parser, and
the core's forward kinematics (spot_policy.core.kinematics) against MuJoCo's."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest

from spot_policy.core import contract
from spot_policy.core.kinematics import KinematicTree, Transform, UrdfError
from spot_sim_bridge.model import SPOT_MJCF, SPOT_URDF, load_knee_torque_table, robot_description
from spot_sim_bridge.model.urdf import MJCF_ROOT_BODY, urdf_from_mjcf


@pytest.fixture(scope="module")
def mjcf() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(str(SPOT_MJCF))


@pytest.fixture(scope="module")
def urdf_in_mujoco() -> mujoco.MjModel:
    """The shipped URDF compiled by MuJoCo's URDF parser, every link kept as a body."""
    robot = ET.fromstring(SPOT_URDF.read_text())
    extension = ET.SubElement(robot, "mujoco")
    ET.SubElement(extension, "compiler", fusestatic="false", discardvisual="false", balanceinertia="false")
    return mujoco.MjModel.from_xml_string(ET.tostring(robot, encoding="unicode"))


def _urdf_body(name: str) -> str:
    return contract.FRAME_BODY if name == MJCF_ROOT_BODY else name


def _inertia_matrix(model: mujoco.MjModel, body: int) -> np.ndarray:
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, model.body_iquat[body])
    r = rot.reshape(3, 3)
    return r @ np.diag(model.body_inertia[body]) @ r.T


def test_shipped_urdf_is_generated_from_the_current_mjcf() -> None:
    assert SPOT_URDF.read_text() == urdf_from_mjcf(), "spot.urdf is stale: run python -m spot_sim_bridge.model.urdf"
    assert robot_description() == SPOT_URDF.read_text()


def test_every_link_has_the_mjcf_mass_com_inertia_and_frame(mjcf, urdf_in_mujoco) -> None:
    compared = 0
    for body in range(1, mjcf.nbody):
        name = mjcf.body(body).name
        other = urdf_in_mujoco.body(_urdf_body(name)).id
        assert urdf_in_mujoco.body_mass[other] == pytest.approx(mjcf.body_mass[body], abs=1e-9), name
        np.testing.assert_allclose(urdf_in_mujoco.body_ipos[other], mjcf.body_ipos[body], atol=1e-9, err_msg=name)
        np.testing.assert_allclose(
            _inertia_matrix(urdf_in_mujoco, other), _inertia_matrix(mjcf, body), atol=1e-12, err_msg=name
        )
        if mjcf.body_parentid[body] != 0:  # the root's pose is the free joint's (odom -> body)
            np.testing.assert_allclose(urdf_in_mujoco.body_pos[other], mjcf.body_pos[body], atol=1e-9, err_msg=name)
            np.testing.assert_allclose(urdf_in_mujoco.body_quat[other], mjcf.body_quat[body], atol=1e-9, err_msg=name)
        compared += 1
    assert compared == 13  # body + 4 x (hip, upper leg, lower leg)
    total = sum(urdf_in_mujoco.body_mass)
    assert total == pytest.approx(sum(mjcf.body_mass), abs=1e-9)


def test_every_joint_has_the_mjcf_axis_limits_and_parent(mjcf, urdf_in_mujoco) -> None:
    hinges = [j for j in range(mjcf.njnt) if mjcf.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    assert sorted(mjcf.joint(j).name for j in hinges) == sorted(contract.ISAAC_JOINT_ORDER)
    for j in hinges:
        name = mjcf.joint(j).name
        other = urdf_in_mujoco.joint(name).id
        assert urdf_in_mujoco.jnt_type[other] == mujoco.mjtJoint.mjJNT_HINGE
        np.testing.assert_allclose(urdf_in_mujoco.jnt_axis[other], mjcf.jnt_axis[j], atol=1e-12, err_msg=name)
        np.testing.assert_allclose(urdf_in_mujoco.jnt_range[other], mjcf.jnt_range[j], atol=1e-12, err_msg=name)
        np.testing.assert_allclose(urdf_in_mujoco.jnt_range[other], contract.joint_limits(name), atol=1e-12)
        child = urdf_in_mujoco.body(urdf_in_mujoco.jnt_bodyid[other]).name
        assert child == _urdf_body(mjcf.body(mjcf.jnt_bodyid[j]).name)
        parent = urdf_in_mujoco.body(urdf_in_mujoco.body_parentid[urdf_in_mujoco.jnt_bodyid[other]]).name
        assert parent == _urdf_body(mjcf.body(mjcf.body_parentid[mjcf.jnt_bodyid[j]]).name)
    limits = {j.get("name"): j.find("limit") for j in ET.fromstring(SPOT_URDF.read_text()).iter("joint")}
    knee_max = load_knee_torque_table()[1].max()
    for name in contract.ISAAC_JOINT_ORDER:
        want = knee_max if name.endswith("_kn") else contract.HIP_EFFORT_LIMIT
        assert float(limits[name].get("effort")) == pytest.approx(want, rel=1e-8), name


def test_collision_shapes_cover_the_mjcf_collision_geoms(mjcf, urdf_in_mujoco) -> None:
    """Each MJCF collision geom has a URDF collision piece of its size at its place (a capsule is a
    cylinder with two spheres)."""
    urdf = {
        (urdf_in_mujoco.body(urdf_in_mujoco.geom_bodyid[g]).name, int(urdf_in_mujoco.geom_type[g])): []
        for g in range(urdf_in_mujoco.ngeom)
    }
    for g in range(urdf_in_mujoco.ngeom):
        key = (urdf_in_mujoco.body(urdf_in_mujoco.geom_bodyid[g]).name, int(urdf_in_mujoco.geom_type[g]))
        urdf[key].append((urdf_in_mujoco.geom_pos[g], urdf_in_mujoco.geom_size[g]))
    checked = 0
    for g in range(mjcf.ngeom):
        if mjcf.geom_group[g] != 3:
            continue
        body = _urdf_body(mjcf.body(mjcf.geom_bodyid[g]).name)
        kind = int(mjcf.geom_type[g])
        shape = mujoco.mjtGeom.mjGEOM_CYLINDER if kind == mujoco.mjtGeom.mjGEOM_CAPSULE else kind
        candidates = urdf.get((body, int(shape)), [])
        size = mjcf.geom_size[g][:2] if shape == mujoco.mjtGeom.mjGEOM_CYLINDER else mjcf.geom_size[g]
        assert any(
            np.allclose(pos, mjcf.geom_pos[g], atol=1e-9) and np.allclose(s[: len(size)], size, atol=1e-9)
            for pos, s in candidates
        ), f"collision geom {mjcf.geom(g).name} of {body} missing from the URDF"
        checked += 1
    assert checked == 1 + 4 * 3  # body box; per leg upper leg, lower leg, foot


def _mujoco_at(mjcf: mujoco.MjModel, q: dict[str, float], base_pos, base_quat_wxyz) -> mujoco.MjData:
    data = mujoco.MjData(mjcf)
    data.qpos[:3], data.qpos[3:7] = base_pos, base_quat_wxyz
    for name, value in q.items():
        data.qpos[mjcf.jnt_qposadr[mjcf.joint(name).id]] = value
    mujoco.mj_kinematics(mjcf, data)
    return data


def test_forward_kinematics_matches_mujoco_at_random_poses(mjcf) -> None:
    tree = KinematicTree.from_urdf(robot_description())
    assert tree.root == contract.FRAME_BODY
    assert sorted(tree.moving_names) == sorted(contract.ISAAC_JOINT_ORDER)
    rng = np.random.default_rng(7)
    for _ in range(20):
        q = {name: rng.uniform(*contract.joint_limits(name)) for name in contract.ISAAC_JOINT_ORDER}
        quat_wxyz = rng.normal(size=4)
        quat_wxyz /= np.linalg.norm(quat_wxyz)
        base_pos = rng.uniform(-2, 2, size=3)
        data = _mujoco_at(mjcf, q, base_pos, quat_wxyz)
        root = Transform(base_pos, np.array([*quat_wxyz[1:], quat_wxyz[0]]))
        poses = tree.link_poses(q, root)
        for body in range(1, mjcf.nbody):
            pose = poses[_urdf_body(mjcf.body(body).name)]
            np.testing.assert_allclose(pose.translation, data.xpos[body], atol=1e-9)
            want = data.xquat[body]
            got = np.array([pose.rotation[3], *pose.rotation[:3]])
            assert min(np.abs(got - want).max(), np.abs(got + want).max()) < 1e-9
        for leg in contract.LEGS:
            np.testing.assert_allclose(poses[f"{leg}_foot"].translation, data.geom(f"{leg}_foot").xpos, atol=1e-9)
        np.testing.assert_allclose(poses["imu"].translation, data.site("imu").xpos, atol=1e-9)


def test_urdf_errors_name_the_problem() -> None:
    with pytest.raises(UrdfError, match="not valid XML"):
        KinematicTree.from_urdf("<robot")
    with pytest.raises(UrdfError, match="names link 'nowhere'"):
        KinematicTree.from_urdf(
            '<robot name="r"><link name="a"/><joint name="j" type="fixed"><parent link="a"/>'
            '<child link="nowhere"/></joint></robot>'
        )
    with pytest.raises(UrdfError, match="type 'floating'"):
        KinematicTree.from_urdf(
            '<robot name="r"><link name="a"/><link name="b"/><joint name="j" type="floating"><parent link="a"/>'
            '<child link="b"/></joint></robot>'
        )
    with pytest.raises(UrdfError, match="exactly one root"):
        KinematicTree.from_urdf('<robot name="r"><link name="a"/><link name="b"/></robot>')
