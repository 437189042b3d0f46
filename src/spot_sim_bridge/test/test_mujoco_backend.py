"""MuJoCo backend: the model matches SPOT.md and the backend behaves as Isaac Lab's Spot actuators do."""

from __future__ import annotations

import csv
import math

import mujoco
import numpy as np
import pytest

from spot_policy.core import contract
from spot_sim_bridge.backends.mujoco import MujocoSpot
from spot_sim_bridge.core.backend import (
    DEFAULT_JOINT_POS,
    RobotState,
    SimBackend,
    default_joint_pos_array,
    quat_to_matrix,
)
from spot_sim_bridge.model import KNEE_TORQUE_TABLE, SPOT_MJCF

GRAVITY = 9.81
ISAAC = contract.ISAAC_JOINT_ORDER
HIPS = np.array([name.split("_")[1] in ("hx", "hy") for name in ISAAC])
HX = np.array([name.endswith("_hx") for name in ISAAC])
KNEES = ~HIPS
YAW_90 = np.array([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)])


def knee_limit_from_csv(angle: float) -> float:
    """The table read independently of the backend's loader."""
    with open(KNEE_TORQUE_TABLE, newline="") as table:
        rows = sorted((float(r["knee_angle_rad"]), float(r["max_output_torque_nm"])) for r in csv.DictReader(table))
    angles, torques = zip(*rows, strict=True)
    return float(np.interp(angle, angles, torques))


def tilt(state: RobotState) -> float:
    """Angle between the body z axis and world z (rad)."""
    return math.acos(float(np.clip(-state.projected_gravity[2], -1.0, 1.0)))


@pytest.fixture
def spot() -> MujocoSpot:
    return MujocoSpot()


# --- the model --------------------------------------------------------------------------------


def test_model_loads_with_contract_joints_limits_and_mass() -> None:
    model = mujoco.MjModel.from_xml_path(str(SPOT_MJCF))
    assert model.opt.timestep == pytest.approx(0.002)
    assert model.body_subtreemass[model.body("base_link").id] == pytest.approx(31.6, abs=0.05)
    hinges = [model.joint(j) for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    assert sorted(j.name for j in hinges) == sorted(ISAAC)
    for joint in hinges:
        assert bool(joint.limited[0])
        assert tuple(joint.range) == pytest.approx(contract.joint_limits(joint.name), abs=1e-9)
        expected_axis = (1, 0, 0) if joint.name.endswith("_hx") else (0, 1, 0)
        assert tuple(joint.axis) == pytest.approx(expected_axis)
    assert model.joint("base").type[0] == mujoco.mjtJoint.mjJNT_FREE
    for leg in contract.LEGS:
        foot = model.geom(f"{leg}_foot")
        assert foot.size[0] == pytest.approx(0.036)
        assert tuple(foot.pos) == pytest.approx((0, 0, -0.3365))
        assert foot.friction[0] == pytest.approx(0.8)
    assert model.camera("track").mode[0] == mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM
    assert {model.sensor(i).type[0] for i in range(model.nsensor)} >= {
        mujoco.mjtSensor.mjSENS_GYRO,
        mujoco.mjtSensor.mjSENS_ACCELEROMETER,
        mujoco.mjtSensor.mjSENS_FRAMEQUAT,
    }
    visual = model.geom_group == 2
    assert visual.any()
    assert not (model.geom_contype[visual] | model.geom_conaffinity[visual]).any()


def test_backend_implements_the_protocol(spot: MujocoSpot) -> None:
    assert isinstance(spot, SimBackend)
    assert spot.joint_names == ISAAC
    assert spot.physics_dt == pytest.approx(0.002)
    assert spot.total_mass == pytest.approx(31.6, abs=0.05)


def test_reset_puts_feet_on_the_ground_in_the_default_pose(spot: MujocoSpot) -> None:
    state = spot.state()
    np.testing.assert_allclose(state.q, [DEFAULT_JOINT_POS[name] for name in ISAAC])
    assert not state.dq.any() and not state.base_lin_vel_body.any() and not state.base_ang_vel_body.any()
    data, model = spot.mj_data, spot.mj_model
    feet = [model.geom(f"{leg}_foot").id for leg in contract.LEGS]
    lowest = min(data.geom_xpos[g, 2] - model.geom_size[g, 0] for g in feet)
    assert lowest == pytest.approx(0.0, abs=1e-9)
    assert 0.45 < state.base_pos[2] < 0.55


# --- standing and frames ----------------------------------------------------------------------


def test_isaac_gains_stand_stably_for_ten_seconds(spot: MujocoSpot) -> None:
    """kp 60 is soft: the knees sag ~0.3 rad under the body's weight, but nothing drifts or falls."""
    default = default_joint_pos_array()
    pose_after_5s = None
    for tick in range(100):
        spot.step(50)
        state = spot.state()
        assert 0.38 < state.base_pos[2] < 0.50, f"t={state.sim_time:.2f}"
        assert tilt(state) < 0.1
        if tick == 49:
            pose_after_5s = state.q
    assert state.sim_time == pytest.approx(10.0)
    assert np.abs(state.dq).max() < 0.05
    np.testing.assert_allclose(state.q[HX], default[HX], atol=0.05)  # hx carries little load
    assert np.abs(state.q - default).max() < 0.45  # gravity sag at kp 60
    assert np.abs(state.q - pose_after_5s).max() < 0.05  # feet do not creep
    assert np.abs(state.base_pos[:2]).max() < 0.25


def test_stiff_gains_hold_the_default_pose_within_five_centiradians() -> None:
    spot = MujocoSpot(kp=600.0, kd=6.0)
    spot.step(2500)
    state = spot.state()
    np.testing.assert_allclose(state.q, default_joint_pos_array(), atol=0.05)
    assert tilt(state) < 0.05


def test_standing_imu_reads_gravity_reaction_and_level_orientation(spot: MujocoSpot) -> None:
    spot.step(5000)  # kd 1.5 damps the stance sway slowly
    state = spot.state()
    assert tilt(state) < 0.05
    np.testing.assert_allclose(state.base_quat, [1, 0, 0, 0], atol=0.03)
    np.testing.assert_allclose(state.projected_gravity, [0, 0, -1], atol=0.05)
    np.testing.assert_allclose(state.imu_lin_acc, [0, 0, GRAVITY], atol=0.5)
    world_to_body = quat_to_matrix(state.base_quat).T
    np.testing.assert_allclose(state.imu_lin_acc, world_to_body @ [0, 0, GRAVITY], atol=0.1)


def test_imu_reads_zero_in_free_fall(spot: MujocoSpot) -> None:
    spot.set_base_state(pos=[0.0, 0.0, 3.0])
    spot.step(1)
    np.testing.assert_allclose(spot.state().imu_lin_acc, 0.0, atol=1e-3)


def test_body_frame_twist_of_a_yawed_base(spot: MujocoSpot) -> None:
    """World +x seen from a body yawed +90 deg is body -y; so is a roll rate about world x."""
    spot.mj_model.opt.gravity[:] = 0.0  # a clean ballistic check, no contact
    spot.set_base_state(pos=[0.0, 0.0, 2.0], quat=YAW_90, lin_vel_world=[1.0, 0.0, 0.0], ang_vel_world=[0.5, 0, 0])
    before = spot.state()
    np.testing.assert_allclose(before.base_lin_vel_body, [0.0, -1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(before.base_ang_vel_body, [0.0, -0.5, 0.0], atol=1e-12)

    # Independent of the conversion: what the pose actually does over 20 ms.
    steps = 10
    spot.step(steps)
    after = spot.state()
    elapsed = steps * spot.physics_dt
    np.testing.assert_allclose((after.base_pos - before.base_pos) / elapsed, [1.0, 0.0, 0.0], atol=0.02)
    rotation_delta = quat_to_matrix(after.base_quat) @ quat_to_matrix(before.base_quat).T
    angle = math.acos(np.clip((np.trace(rotation_delta) - 1.0) / 2.0, -1.0, 1.0))
    axis = np.array(
        [
            rotation_delta[2, 1] - rotation_delta[1, 2],
            rotation_delta[0, 2] - rotation_delta[2, 0],
            rotation_delta[1, 0] - rotation_delta[0, 1],
        ]
    ) / (2.0 * math.sin(angle))
    np.testing.assert_allclose(axis * angle / elapsed, [0.5, 0.0, 0.0], atol=0.02)
    np.testing.assert_allclose(after.base_lin_vel_body, [0.0, -1.0, 0.0], atol=0.02)


# --- actuators --------------------------------------------------------------------------------


def test_big_target_error_saturates_hips_at_45_and_knees_at_the_table(spot: MujocoSpot) -> None:
    signs = np.where(np.arange(12) % 2 == 0, 1.0, -1.0)
    spot.set_targets(default_joint_pos_array() + 2.0 * signs)
    spot.step(1)
    tau = spot.state().tau
    np.testing.assert_array_equal(tau[HIPS], contract.HIP_EFFORT_LIMIT * signs[HIPS])
    np.testing.assert_allclose(tau[KNEES], knee_limit_from_csv(-1.5) * signs[KNEES], rtol=1e-12)
    assert knee_limit_from_csv(-1.5) == pytest.approx(113.0, abs=0.5)


@pytest.mark.parametrize(("knee_angle", "table_angle"), [(-0.5, -0.5), (-2.0, -2.0), (-2.9, -2.7929), (-0.1, -0.2471)])
def test_knee_limit_follows_the_angle_and_clamps_outside_the_table(
    spot: MujocoSpot, knee_angle: float, table_angle: float
) -> None:
    spot.reset(joint_pos={f"{leg}_kn": knee_angle for leg in contract.LEGS}, base_height=1.5)
    spot.set_targets(spot.state().q + 3.0)
    spot.step(1)
    np.testing.assert_allclose(spot.state().tau[KNEES], knee_limit_from_csv(table_angle), rtol=1e-12)


def test_command_delay_shifts_the_response_by_exactly_the_delay_steps() -> None:
    delay, before_change, after_change = 3, 10, 40
    new_target = default_joint_pos_array() + 0.3
    delayed, prompt_late, unchanged = (MujocoSpot(command_delay_steps=d) for d in (delay, 0, 0))
    assert delayed.command_delay_steps == delay
    for sim in (delayed, prompt_late, unchanged):
        sim.step(before_change)
    delayed.set_targets(new_target)  # at step s, applied from s + delay
    torques = {id(sim): [] for sim in (delayed, prompt_late, unchanged)}
    for k in range(after_change):
        if k == delay:
            prompt_late.set_targets(new_target)  # the same target, set `delay` steps later
        for sim in (delayed, prompt_late, unchanged):
            sim.step(1)
            torques[id(sim)].append(sim.state().tau)
        a, b = delayed.state(), prompt_late.state()
        np.testing.assert_array_equal(a.q, b.q)
        np.testing.assert_array_equal(a.dq, b.dq)
        np.testing.assert_array_equal(a.tau, b.tau)
    delayed_tau, unchanged_tau = np.array(torques[id(delayed)]), np.array(torques[id(unchanged)])
    first_difference = int(np.flatnonzero(np.any(delayed_tau != unchanged_tau, axis=1))[0])
    assert first_difference == delay


def test_limp_mode_applies_damping_only(spot: MujocoSpot) -> None:
    spot.set_targets(default_joint_pos_array() + 0.2)
    spot.step(20)
    spot.set_limp(True)
    moving = spot.state()
    assert np.abs(moving.dq).max() > 0.5
    spot.step(1)
    np.testing.assert_allclose(spot.state().tau, -1.5 * moving.dq, rtol=1e-12, atol=1e-12)
    spot.set_limp(False)
    spot.set_targets(default_joint_pos_array() + 0.2)
    before = spot.state()
    spot.step(1)
    expected = 60.0 * (default_joint_pos_array() + 0.2 - before.q) - 1.5 * before.dq
    np.testing.assert_allclose(spot.state().tau, expected, rtol=1e-12, atol=1e-9)


def test_gains_are_per_joint_in_isaac_order(spot: MujocoSpot) -> None:
    kp = np.arange(1.0, 13.0)
    spot.set_gains(kp, np.zeros(12))
    spot.set_targets(default_joint_pos_array() + 0.1)
    spot.step(1)
    np.testing.assert_allclose(spot.state().tau, 0.1 * kp, rtol=1e-9)


def test_bad_targets_and_gains_are_refused(spot: MujocoSpot) -> None:
    with pytest.raises(ValueError):
        spot.set_targets(np.full(12, np.nan))
    with pytest.raises(ValueError):
        spot.set_targets(np.zeros(11))
    with pytest.raises(ValueError):
        spot.set_gains(-1.0, 1.5)
    with pytest.raises(KeyError):
        spot.reset(joint_pos={"front_left_hip_x": 0.0})
    with pytest.raises(ValueError):
        spot.set_command_delay(-1)


# --- disturbances and domain parameters -------------------------------------------------------


def test_push_adds_the_kick_to_the_base_velocity(spot: MujocoSpot) -> None:
    spot.step(500)
    before = spot.state()
    kick = np.array([0.5, -0.3, 0.1])
    spot.push(kick)
    after = spot.state()
    world_velocity = quat_to_matrix(after.base_quat) @ after.base_lin_vel_body
    np.testing.assert_allclose(world_velocity - quat_to_matrix(before.base_quat) @ before.base_lin_vel_body, kick)
    spot.step(50)
    assert spot.state().base_pos[0] - before.base_pos[0] > 0.01


def test_friction_changes_the_model_and_the_sliding(spot: MujocoSpot) -> None:
    def foot_slide_after_a_sideways_push(mu: float) -> float:
        sim = MujocoSpot(friction=mu)
        sim.step(250)
        feet = [sim.mj_model.geom(f"{leg}_foot").id for leg in contract.LEGS]
        start = sim.mj_data.geom_xpos[feet, 1].copy()
        sim.push([0.0, 0.5, 0.0])
        sim.step(250)
        return float(np.mean(sim.mj_data.geom_xpos[feet, 1] - start))

    spot.set_friction(0.3)
    model = spot.mj_model
    assert model.geom("floor").friction[0] == pytest.approx(0.3)
    assert model.geom("fl_foot").friction[0] == pytest.approx(0.3)
    assert foot_slide_after_a_sideways_push(0.05) > foot_slide_after_a_sideways_push(1.0) + 0.03


def test_payload_adds_body_mass_at_the_com_and_lowers_the_stance(spot: MujocoSpot) -> None:
    spot.step(100)
    before = spot.state()
    spot.set_payload(10.0)
    assert spot.total_mass == pytest.approx(41.6, abs=0.05)
    unchanged = spot.state()
    for field in ("q", "dq", "base_pos", "base_quat", "tau"):
        np.testing.assert_array_equal(getattr(unchanged, field), getattr(before, field))
    inertia = spot.mj_model.body_inertia[spot.mj_model.body("base_link").id]
    np.testing.assert_allclose(inertia, [0.08154, 0.54923, 0.56945])

    light, heavy = MujocoSpot(), MujocoSpot(payload_kg=10.0)
    light.step(1500)
    heavy.step(1500)
    assert heavy.state().base_pos[2] < light.state().base_pos[2] - 0.01
    heavy.set_payload(0.0)
    assert heavy.total_mass == pytest.approx(31.6, abs=0.05)


# --- determinism and rendering ----------------------------------------------------------------


def test_two_fresh_instances_are_bit_identical() -> None:
    first, second = MujocoSpot(command_delay_steps=2), MujocoSpot(command_delay_steps=2)
    default = default_joint_pos_array()
    for tick in range(100):
        target = default + 0.2 * math.sin(tick * 0.1) * np.ones(12)
        for sim in (first, second):
            sim.set_targets(target)
            sim.step(10)
    a, b = first.state(), second.state()
    for field in (
        "sim_time",
        "q",
        "dq",
        "tau",
        "base_pos",
        "base_quat",
        "base_lin_vel_body",
        "base_ang_vel_body",
        "imu_lin_acc",
    ):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_render_from_the_tracking_camera(spot: MujocoSpot) -> None:
    try:
        frame = spot.render(64, 48)
    except Exception as error:  # no GL on this machine: rendering is optional for the bridge
        pytest.skip(f"no offscreen GL: {error}")
    try:
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        assert frame.std() > 5.0  # a scene, not a blank buffer
        assert spot.render(32, 24).shape == (24, 32, 3)
    finally:
        spot.close()
