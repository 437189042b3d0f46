"""Terrain, actuator strength, off-centre payload and the simulated sensors (no ROS)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spot_policy.core import paths
from spot_sim_bridge.backends.mujoco import MujocoSpot
from spot_sim_bridge.core.bridge import BridgeConfig, BridgeCore, load_actuation, make_backend
from spot_sim_bridge.core.sensors import SensorConfig
from spot_sim_bridge.core.terrain import TerrainError, TerrainSpec, terrain_from_params


def test_terrain_heights_follow_their_definition() -> None:
    slope = TerrainSpec("slope", slope_deg=10.0, start_x_m=1.0)
    assert slope.height_at(0.5, 0.0) == pytest.approx(0.0)
    assert slope.height_at(3.0, 1.0) == pytest.approx(2.0 * math.tan(math.radians(10.0)), abs=1e-9)
    down = TerrainSpec("slope", slope_deg=-8.0)
    assert down.height_at(4.0, 0.0) < 0.0
    steps = TerrainSpec("steps", step_height_m=0.05, step_length_m=0.5, start_x_m=1.0)
    assert steps.height_at(1.2, 0.0) == pytest.approx(0.05)
    assert steps.height_at(1.7, 0.0) == pytest.approx(0.10)
    rough = TerrainSpec("rough", rough_amplitude_m=0.04, seed=3)
    h = rough.heights()
    xs, _ = rough.axes()
    assert np.all(h[:, xs < 1.0] == 0.0)
    assert h.min() >= 0.0 and h.max() <= 0.04 and h[:, xs > 1.0].std() > 0.005
    assert np.array_equal(h, TerrainSpec("rough", rough_amplitude_m=0.04, seed=3).heights())
    assert not np.array_equal(h, TerrainSpec("rough", rough_amplitude_m=0.04, seed=4).heights())


def test_bad_terrain_names_the_parameter() -> None:
    with pytest.raises(TerrainError, match=r"terrain_slope_deg .*within"):
        TerrainSpec("slope", slope_deg=45.0)
    with pytest.raises(TerrainError, match="terrain 'lava' is unknown"):
        terrain_from_params({"terrain": "lava"})


@pytest.mark.parametrize("kind", ["slope", "steps", "rough"])
def test_mujoco_ground_is_the_terrain(kind: str) -> None:
    """A body dropped onto the field comes to rest on the spec's height there (MuJoCo contacts)."""
    terrain = TerrainSpec(kind, slope_deg=8.0, step_height_m=0.06, rough_amplitude_m=0.05, seed=1)
    spot = MujocoSpot(terrain=terrain)
    spot.set_limp(True)
    spot.set_base_state(pos=[6.0, 0.3, float(terrain.height_at(6.0, 0.3)) + 0.8])
    spot.step(1500)
    data, model = spot.mj_data, spot.mj_model
    feet = [model.geom(f"{leg}_foot").id for leg in ("fl", "fr", "hl", "hr")]
    lowest = min(data.geom_xpos[g, 2] - 0.036 - terrain.height_at(*data.geom_xpos[g, :2]) for g in feet)
    assert abs(lowest) < 0.02  # a foot rests on the ground (within the field's triangulation)


def test_torque_limit_scale_limits_the_torque() -> None:
    spot = MujocoSpot(torque_limit_scale=0.8)
    spot.set_targets(np.full(12, 0.7))  # far from the pose: every hip saturates
    spot.step(1)
    tau = spot.state().tau
    assert np.max(np.abs(tau[:8])) == pytest.approx(45.0 * 0.8)
    with pytest.raises(ValueError, match="torque limit scale"):
        spot.set_torque_limit_scale(0.0)


def test_off_centre_payload_moves_the_com() -> None:
    spot = MujocoSpot()
    com0 = spot.mj_model.body_ipos[spot._base_body].copy()
    spot.set_payload(10.0, [0.3, 0.0, 0.0])
    mass = spot.mj_model.body_mass[spot._base_body]
    assert spot.mj_model.body_ipos[spot._base_body][0] == pytest.approx(com0[0] + 10.0 * 0.3 / mass)
    assert spot.total_mass == pytest.approx(31.6, abs=0.05) or spot.total_mass > 41.0
    spot.set_payload(0.0)
    assert np.allclose(spot.mj_model.body_ipos[spot._base_body], com0)


def _core(**config) -> BridgeCore:
    actuation = load_actuation("spot_flat_mjx", policies_dir=paths.config_dir() / "policies")
    return BridgeCore(make_backend("mujoco", actuation.physics_dt), actuation, BridgeConfig(**config))


def test_exact_sensors_publish_the_true_state() -> None:
    core = _core()
    core.step_physics(20)
    sensed = core.sensed()
    assert sensed.publish == {"imu", "odom", "joint_states"}
    assert np.array_equal(sensed.state.q, core.state().q)


def test_noise_is_bounded_and_keyed_by_time() -> None:
    core = _core(sensors=SensorConfig(seed=5, noise_joint_pos=0.05, noise_base_lin_vel=0.1))
    core.step_physics(20)
    a, b = core.sensed(), core.sensed()  # the same instant twice reads the same
    assert np.array_equal(a.state.q, b.state.q)
    err = a.state.q - core.state().q
    assert 0.0 < np.max(np.abs(err)) <= 0.05
    core.step_physics(10)
    assert not np.array_equal(core.sensed().state.q - core.state().q, err)


def test_latency_publishes_an_older_state() -> None:
    late = _core(sensors=SensorConfig(latency_ms=20.0))
    exact = _core()
    history = []
    for _ in range(30):
        exact.step_physics(1)
        history.append(exact.state().base_pos.copy())
        late.step_physics(1)
    assert np.allclose(late.sensed().state.base_pos, history[-1 - 10])


def test_faults_nan_and_stale() -> None:
    core = _core(sensors=SensorConfig(fault_nan_at_s=0.1, fault_stale_topic="imu", fault_stale_at_s=0.2,
                                      fault_stale_duration_s=0.1))  # fmt: skip
    core.step_physics(40)  # 0.08 s
    assert np.all(np.isfinite(core.sensed().state.q))
    core.step_physics(10)  # 0.1 s
    hit = core.sensed()
    assert hit.injected == "nan" and math.isnan(hit.state.q[0])
    core.step_physics(10)
    assert np.all(np.isfinite(core.sensed().state.q))
    core.step_physics(40)  # 0.2 s
    assert core.sensed().publish == {"odom", "joint_states"}
    core.step_physics(50)  # 0.3 s: over
    assert core.sensed().publish == {"imu", "odom", "joint_states"}


def test_drops_are_seeded() -> None:
    config = SensorConfig(seed=2, drop_probability=0.3)
    pattern = []
    for _ in range(2):
        core = _core(sensors=config)
        drops = []
        for _ in range(100):
            core.lockstep_step()
            drops.append(core.sensed().dropped)
        pattern.append(drops)
    assert pattern[0] == pattern[1] and 15 < sum(pattern[0]) < 45
    runs = "".join("x" if d else "." for d in pattern[0]).split(".")
    assert max(len(r) for r in runs) <= 2  # never a gap the node's input timeout would call stale


def test_actuator_and_latency_parameters_are_checked() -> None:
    core = _core(kp_scale=1.2, added_command_latency_ms=40.0)
    assert core.command_delay_steps == 20
    with pytest.raises(ValueError, match="actuator_kp_scale"):
        _core(kp_scale=0.0)
    with pytest.raises(ValueError, match="added_command_latency_ms"):
        _core(added_command_latency_ms=-1.0)
    with pytest.raises(ValueError, match="sense_latency_ms"):
        SensorConfig(latency_ms=500.0)
