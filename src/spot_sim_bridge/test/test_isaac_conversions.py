"""The Isaac Sim backend's computations: name mapping, frames, the IMU, the PD law, the standing height.

Isaac Sim itself cannot be installed here; what the backend computes is checked here, much of it
against the MuJoCo backend, which implements the same contract independently. Release, Python,
Kit's start and shutdown, the USD and the scene settings: ``test_isaac_backend.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from spot_policy.core import contract
from spot_sim_bridge.backends import isaac_conversions as conv
from spot_sim_bridge.backends.mujoco import MujocoSpot
from spot_sim_bridge.core.backend import default_joint_pos_array, quat_to_matrix
from spot_sim_bridge.model import load_knee_torque_table

ISAAC = contract.ISAAC_JOINT_ORDER
G = conv.GRAVITY
YAW_90 = np.array([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)])
ROLL_90 = np.array([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0])


def random_quat(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return q / np.linalg.norm(q)


# --- joint names --------------------------------------------------------------------------------


def test_dof_order_is_mapped_by_name_and_matches_the_spot_md_check() -> None:
    # An articulation listing its DOFs in SDK order: the index map SPOT.md gives as a check.
    sdk_order = list(contract.SDK_JOINT_ORDER)
    assert conv.leg_dof_indices(sdk_order).tolist() == [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]
    assert conv.leg_dof_indices(list(ISAAC)).tolist() == list(range(12))


@pytest.mark.parametrize("spelling", [lambda j: j, contract.urdf_name, contract.sdk_name], ids=["usd", "urdf", "sdk"])
def test_every_naming_maps_and_extra_dofs_are_left_alone(spelling) -> None:
    rng = np.random.default_rng(7)
    names = [spelling(j) for j in ISAAC] + ["arm0_sh0", "arm0_el0"]
    order = rng.permutation(len(names))
    dof_names = [names[i] for i in order]
    idx = conv.leg_dof_indices(dof_names)
    assert [contract.canonical_joint_name(dof_names[i]) for i in idx] == list(ISAAC)

    arm_values = np.arange(len(dof_names), dtype=float) * 10.0
    scattered = conv.scatter_to_dofs(default_joint_pos_array(), idx, arm_values)
    np.testing.assert_array_equal(scattered[idx], default_joint_pos_array())
    others = np.setdiff1d(np.arange(len(dof_names)), idx)
    np.testing.assert_array_equal(scattered[others], arm_values[others])

    lower, upper = -np.arange(len(dof_names), dtype=float), np.arange(len(dof_names), dtype=float)
    limits = conv.joint_limits_from_dofs(lower, upper, idx)
    assert limits.shape == (12, 2)
    np.testing.assert_array_equal(limits[:, 1], upper[idx])


def test_missing_or_doubled_joints_are_named() -> None:
    with pytest.raises(ValueError, match=r"missing hr_kn"):
        conv.leg_dof_indices(list(ISAAC[:-1]))
    with pytest.raises(ValueError, match=r"given twice: fl_hx \('fl_hx' and 'front_left_hip_x'\)"):
        conv.leg_dof_indices([*ISAAC, "front_left_hip_x"])


# --- quaternions and frames ----------------------------------------------------------------------


def test_quaternion_conventions() -> None:
    np.testing.assert_array_equal(conv.quat_xyzw_to_wxyz([0.1, 0.2, 0.3, 0.9]), [0.9, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(np.linalg.norm(conv.normalized_quat([2.0, 0.0, 0.0, 0.0])), 1.0)
    with pytest.raises(ValueError):
        conv.normalized_quat([0.0, 0.0, 0.0, 0.0])


def test_world_to_body_is_the_inverse_rotation() -> None:
    # Yawed +90 deg: world +x is body -y, world +y is body +x.
    np.testing.assert_allclose(conv.world_to_body([1.0, 0.0, 0.0], YAW_90), [0.0, -1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(conv.world_to_body([0.0, 1.0, 0.0], YAW_90), [1.0, 0.0, 0.0], atol=1e-12)
    rng = np.random.default_rng(3)
    for _ in range(20):
        quat, v = random_quat(rng), rng.normal(size=3)
        np.testing.assert_allclose(conv.world_to_body(quat_to_matrix(quat) @ v, 3.0 * quat), v, atol=1e-12)


def test_imu_reads_proper_acceleration_in_the_body_frame() -> None:
    dt = 0.002
    still = np.array([0.3, -0.2, 0.0])
    level = [1.0, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(conv.proper_acceleration_body(still, still, dt, level), [0, 0, G], atol=1e-9)
    falling = still + conv.GRAVITY_WORLD * dt
    np.testing.assert_allclose(conv.proper_acceleration_body(still, falling, dt, YAW_90), 0.0, atol=1e-9)
    # Accelerating at 2 m/s^2 along world x while yawed +90 deg: body -y, plus the ground's push-up.
    faster = still + np.array([2.0 * dt, 0.0, 0.0])
    np.testing.assert_allclose(conv.proper_acceleration_body(still, faster, dt, YAW_90), [0, -2.0, G], atol=1e-9)
    # Lying on its left side (rolled +90 deg): the support pushes along body +y.
    np.testing.assert_allclose(conv.proper_acceleration_body(still, still, dt, ROLL_90), [0, G, 0], atol=1e-9)
    with pytest.raises(ValueError):
        conv.proper_acceleration_body(still, still, 0.0, level)


# --- the PD law ---------------------------------------------------------------------------------


def test_pd_law_gives_the_mujoco_backends_torques_step_by_step() -> None:
    """Same gains, targets, delay and states: the same torque as MujocoSpot applies, to the last bit."""
    rng = np.random.default_rng(11)
    kp, kd = rng.uniform(20, 80, 12), rng.uniform(0.5, 3.0, 12)
    mujoco_spot = MujocoSpot(kp=kp, kd=kd, command_delay_steps=2)
    pd = conv.SpotPD(kp, kd)
    pd.set_delay(2)
    pd.reset(default_joint_pos_array())
    for step in range(60):
        if step % 7 == 0:
            target = default_joint_pos_array() + rng.uniform(-0.6, 0.6, 12)
            mujoco_spot.set_targets(target)
            pd.set_target(target)
        if step == 40:
            mujoco_spot.set_limp(True)
            pd.limp = True
        before = mujoco_spot.state()
        expected = pd.torque(before.q, before.dq)
        mujoco_spot.step(1)
        np.testing.assert_allclose(mujoco_spot.state().tau, expected, rtol=1e-12, atol=1e-12)


def test_pd_limits_delay_and_validation() -> None:
    pd = conv.SpotPD()
    assert pd.delay_steps == 0
    np.testing.assert_allclose(pd.max_effort[~conv.KNEES], 45.0)
    np.testing.assert_allclose(pd.max_effort[conv.KNEES], 113.236015)
    q = default_joint_pos_array()
    pd.reset(q)
    pd.set_target(q + 3.0)
    tau = pd.torque(q, np.zeros(12))
    np.testing.assert_allclose(tau[~conv.KNEES], 45.0)
    np.testing.assert_allclose(tau[conv.KNEES], np.interp(-1.5, *load_knee_torque_table()))
    # Outside the table the knee limit holds its end value.
    np.testing.assert_allclose(pd.effort_limit(np.full(12, -3.5))[conv.KNEES], 37.165077)

    pd.set_delay(3)
    pd.reset(q)
    pd.set_target(q + 0.1)
    taus = [pd.torque(q, np.zeros(12)) for _ in range(5)]
    assert [bool(np.any(t != 0.0)) for t in taus] == [False, False, False, True, True]
    for bad in (lambda: pd.set_gains(-1.0, 1.5), lambda: pd.set_target(np.zeros(11)), lambda: pd.set_delay(-1)):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError):
        pd.set_target(np.full(12, np.nan))


def test_leg_drives_are_zeroed_and_other_drives_kept() -> None:
    idx = conv.leg_dof_indices([*ISAAC, "arm0_sh0"])
    stiffness, damping = conv.drive_gains_for_explicit_pd(np.full(13, 400.0), np.full(13, 40.0), idx)
    np.testing.assert_array_equal(stiffness, [0.0] * 12 + [400.0])
    np.testing.assert_array_equal(damping, [0.0] * 12 + [40.0])


def test_friction_and_payload_checks() -> None:
    assert conv.checked_friction(0.4) == 0.4
    assert conv.body_mass_with_payload(16.708, 10.0) == pytest.approx(26.708)
    with pytest.raises(ValueError):
        conv.checked_friction(-0.1)
    with pytest.raises(ValueError):
        conv.checked_friction(math.nan)
    with pytest.raises(ValueError):
        conv.body_mass_with_payload(16.708, -20.0)


# --- placing the robot --------------------------------------------------------------------------


@pytest.mark.parametrize("knee", [-1.5, -1.1, -2.0])
def test_standing_height_matches_the_mujoco_models_touchdown(knee: float) -> None:
    pose = {f"{leg}_kn": knee for leg in contract.LEGS}
    spot = MujocoSpot()
    spot.reset(joint_pos=pose)
    height = conv.standing_base_height(default_joint_pos_array(pose))
    assert height == pytest.approx(float(spot.state().base_pos[2]), abs=1e-9)
    feet = conv.foot_centers_body(default_joint_pos_array(pose))
    np.testing.assert_allclose(feet[0] * [1, -1, 1], feet[1], atol=1e-12)  # left/right mirror
