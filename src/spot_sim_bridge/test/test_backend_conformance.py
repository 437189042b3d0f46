"""Backend conformance: what a simulator must do to stand in for the robot behind the sim bridge.

One suite, run against every backend (``bridge_core.BACKENDS``). A backend that passes puts the
same Spot behind the same topics: the contract's 12 joints with Spot's limits, standing on the
policy config's gains, REP-103 frames (body-frame twist, gravity, IMU), joint targets that move
their own joint, the bridge's safe behaviour on command loss, and bit-identical lockstep replays
where the backend claims them (``deterministic``).

MuJoCo runs here (and in CI). Isaac Sim runs wherever ``isaacsim`` imports (5.x on Python 3.11,
6.x on Python 3.12); it cannot be installed on this project's CI, where its cases are skipped with
the reason. Isaac Sim keeps one stage per process, so its cases share one backend, reset to
nominal before each; Kit is closed after the last case (``close()`` returns: the backend starts
it with ``fast_shutdown`` off, so pytest goes on and reports every case).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from spot_policy.core import contract
from spot_sim_bridge.backends.isaac import close_app, isaac_unavailable_reason
from spot_sim_bridge.core.backend import (
    ISAAC_KD,
    ISAAC_KP,
    RobotState,
    SimBackend,
    default_joint_pos_array,
    quat_to_matrix,
)
from spot_sim_bridge.core.bridge import (
    BACKENDS,
    Actuation,
    BridgeConfig,
    BridgeCore,
    SafeBehaviour,
    load_actuation,
    make_backend,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "spot_policy_node" / "test"))
from policy_fixtures import make_run

DT = 0.002
G = 9.81
ISAAC = contract.ISAAC_JOINT_ORDER
SDK_NAMES = [contract.sdk_name(n) for n in contract.SDK_JOINT_ORDER]  # commands sent the robot's way
HX = np.array([n.endswith("_hx") for n in ISAAC])
YAW_90 = np.array([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)])
#: SPOT.md's two descriptions differ by up to 0.052 rad (fr_hy upper 2.24363 vs 2.295108; knee
#: uppers -0.2544...-0.2483 vs -0.2471): a backend's model may follow either.
LIMIT_TOLERANCE = 0.06

_shared: dict[str, SimBackend] = {}


def unavailable(name: str) -> str | None:
    return isaac_unavailable_reason() if name == "isaac" else None


def fresh(name: str) -> SimBackend:
    """A backend at rest in the default pose with Isaac Lab's gains and nominal domain parameters."""
    if name == "isaac":  # one stage per process: reuse it
        backend = _shared.get(name) or _shared.setdefault(name, make_backend(name, DT))
    else:
        backend = make_backend(name, DT)
    backend.set_gains(ISAAC_KP, ISAAC_KD)
    backend.set_command_delay(0)
    backend.set_friction(0.8)
    backend.set_payload(0.0)
    backend.set_limp(False)
    backend.reset()
    return backend


@pytest.fixture(scope="module", autouse=True)
def _close_shared_backends() -> Iterator[None]:
    """Isaac Sim's Kit is shut down after the module's last case (it starts once per process)."""
    yield
    if _shared.pop("isaac", None) is not None:
        close_app()


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    reason = unavailable(request.param)
    if reason is not None:
        pytest.skip(f"{request.param}: {reason}")
    return request.param


@pytest.fixture
def backend(backend_name: str) -> Iterator[SimBackend]:
    yield fresh(backend_name)


@pytest.fixture(scope="module")
def actuation(tmp_path_factory: pytest.TempPathFactory) -> Actuation:
    """Gains, pose and rates of the Isaac Lab Spot flat config (kp 60, kd 1.5, 500 Hz, decimation 10)."""
    loaded = load_actuation(make_run(tmp_path_factory.mktemp("logs")))
    assert np.allclose(loaded.kp, 60.0) and np.allclose(loaded.kd, 1.5) and loaded.physics_dt == DT
    return loaded


def core_for(backend: SimBackend, actuation: Actuation, **config) -> BridgeCore:
    return BridgeCore(backend, actuation, BridgeConfig(**config))


def send(core: BridgeCore, targets: np.ndarray) -> None:
    """A joint_command in the Spot SDK's order and names, as the robot's bridge would pass it on."""
    by_name = dict(zip(ISAAC, np.asarray(targets, dtype=float), strict=True))
    assert core.command(SDK_NAMES, [float(by_name[contract.from_sdk_name(n)]) for n in SDK_NAMES])


def tilt(state: RobotState) -> float:
    return math.acos(float(np.clip(-state.projected_gravity[2], -1.0, 1.0)))


def rotation_vector(rotation: np.ndarray) -> np.ndarray:
    """Axis times angle of a rotation matrix (small angles welcome)."""
    angle = math.acos(float(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)))
    skew = np.array([rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0], rotation[1, 0] - rotation[0, 1]])
    return skew / 2.0 if angle < 1e-9 else skew * angle / (2.0 * math.sin(angle))


# --- joints -------------------------------------------------------------------------------------


def test_implements_the_interface_with_the_contract_joints(backend: SimBackend) -> None:
    assert isinstance(backend, SimBackend)
    assert backend.joint_names == ISAAC
    assert backend.physics_dt == pytest.approx(DT)
    assert isinstance(backend.deterministic, bool)
    state = backend.state()
    assert state.joint_names == ISAAC and state.sim_time == pytest.approx(0.0)
    for field in ("q", "dq", "tau"):
        assert getattr(state, field).shape == (12,) and np.all(np.isfinite(getattr(state, field)))
    for field, size in (("base_pos", 3), ("base_quat", 4), ("base_lin_vel_body", 3), ("imu_lin_acc", 3)):
        assert getattr(state, field).shape == (size,) and np.all(np.isfinite(getattr(state, field)))


def test_joint_limits_are_spots(backend: SimBackend) -> None:
    limits = backend.joint_limits()
    assert limits.shape == (12, 2)
    expected = np.array([contract.joint_limits(name) for name in ISAAC])
    np.testing.assert_allclose(limits, expected, atol=LIMIT_TOLERANCE)
    default = default_joint_pos_array()
    assert np.all(limits[:, 0] < default) and np.all(default < limits[:, 1])


# --- standing -----------------------------------------------------------------------------------


def test_reset_is_at_rest_in_the_given_pose_feet_on_the_ground(backend: SimBackend) -> None:
    state = backend.state()
    np.testing.assert_allclose(state.q, default_joint_pos_array(), atol=1e-4)
    np.testing.assert_allclose(state.dq, 0.0, atol=1e-4)
    np.testing.assert_allclose(state.base_lin_vel_body, 0.0, atol=1e-4)
    np.testing.assert_allclose(state.base_ang_vel_body, 0.0, atol=1e-4)
    np.testing.assert_allclose(state.base_quat, [1.0, 0.0, 0.0, 0.0], atol=1e-4)
    assert 0.45 < state.base_pos[2] < 0.56  # touchdown for the default pose: 0.519 m (SPOT.md kinematics)

    pose = {"fl_kn": -1.2, "hr_hy": 1.0}
    backend.reset(joint_pos=pose)
    np.testing.assert_allclose(backend.state().q, default_joint_pos_array(pose), atol=1e-4)


def test_stands_on_the_policy_gains_with_level_frames(backend: SimBackend, actuation: Actuation) -> None:
    """kp 60 / kd 1.5 from the policy config, PD on the default pose: Spot stands, sags, does not fall."""
    core = core_for(backend, actuation)  # holds the reset pose until a command arrives
    default = default_joint_pos_array()
    for _ in range(16):  # 4 s
        core.step_physics(125)
        state = core.state()
        assert 0.36 < state.base_pos[2] < 0.54, f"t={state.sim_time:.2f} height {state.base_pos[2]:.3f}"
        assert tilt(state) < 0.12, f"t={state.sim_time:.2f} tilt {tilt(state):.3f}"
    assert state.sim_time == pytest.approx(4.0)
    np.testing.assert_allclose(state.q[HX], default[HX], atol=0.05)  # hx carries little load
    assert np.abs(state.q - default).max() < 0.45  # gravity sag at kp 60
    assert np.abs(state.dq).max() < 0.5
    assert np.abs(state.base_pos[:2]).max() < 0.25  # feet do not walk away
    # Frames while standing level: gravity down the body z axis; the IMU reads the ground's push-up.
    np.testing.assert_allclose(state.projected_gravity, [0.0, 0.0, -1.0], atol=0.1)
    np.testing.assert_allclose(state.projected_gravity, quat_to_matrix(state.base_quat).T @ [0.0, 0.0, -1.0])
    np.testing.assert_allclose(state.imu_lin_acc, -G * state.projected_gravity, atol=0.8)
    assert abs(float(np.linalg.norm(state.imu_lin_acc)) - G) < 0.6


# --- frames -------------------------------------------------------------------------------------


def test_body_frame_twist_and_free_fall_imu_while_yawed(backend: SimBackend) -> None:
    """Thrown in the air yawed +90 deg: world +x is body -y, a roll about world x is a body -y rate."""
    backend.set_base_state(pos=[0.0, 0.0, 3.0], quat=YAW_90, lin_vel_world=[1.0, 0.0, 0.0], ang_vel_world=[0.5, 0, 0])
    before = backend.state()
    np.testing.assert_allclose(before.base_lin_vel_body, [0.0, -1.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(before.base_ang_vel_body, [0.0, -0.5, 0.0], atol=1e-3)

    steps = 10
    backend.step(steps)
    after = backend.state()
    elapsed = steps * DT
    # Independent of the backend's conversions: what the pose did over 20 ms.
    np.testing.assert_allclose((after.base_pos - before.base_pos) / elapsed, [1.0, 0.0, -G * elapsed / 2], atol=0.02)
    turned = quat_to_matrix(after.base_quat) @ quat_to_matrix(before.base_quat).T
    np.testing.assert_allclose(rotation_vector(turned) / elapsed, [0.5, 0.0, 0.0], atol=0.02)
    np.testing.assert_allclose(after.base_lin_vel_body, [0.0, -1.0, -G * elapsed], atol=0.03)
    np.testing.assert_allclose(after.base_ang_vel_body, [0.0, -0.5, 0.0], atol=0.03)
    np.testing.assert_allclose(after.imu_lin_acc, 0.0, atol=0.3)  # free fall: an accelerometer reads nothing


# --- commands -----------------------------------------------------------------------------------


@pytest.mark.parametrize("joint", ISAAC)
def test_a_target_step_moves_that_joint_and_not_the_others(
    backend: SimBackend, actuation: Actuation, joint: str
) -> None:
    """In flight (no ground coupling), commanded by name in the SDK's order through the bridge core."""
    core = core_for(backend, actuation)
    backend.set_base_state(pos=[0.0, 0.0, 3.0])
    targets = default_joint_pos_array()
    send(core, targets)
    core.lockstep_step()
    before = core.state().q
    index = ISAAC.index(joint)
    step = 0.3 if index % 2 == 0 else -0.3
    targets[index] += step
    for _ in range(8):  # 0.16 s
        send(core, targets)
        core.lockstep_step()
    moved = core.state().q - before
    assert 0.6 * abs(step) < moved[index] * np.sign(step) < 1.5 * abs(step), f"{joint} moved {moved[index]:.3f}"
    others = np.delete(np.abs(moved), index)
    assert others.max() < 0.25 * abs(moved[index]), f"{ISAAC[int(np.argmax(np.abs(moved) * (np.arange(12) != index)))]}"


# --- safe behaviour -----------------------------------------------------------------------------


def test_command_loss_holds_the_last_targets(backend: SimBackend, actuation: Actuation) -> None:
    core = core_for(backend, actuation, on_command_loss="hold", command_timeout_s=0.1)
    last = default_joint_pos_array()
    for _ in range(25):  # 0.5 s of commands
        send(core, last)
        core.lockstep_step()
    core.step_physics(50)  # 0.1 s without: the timeout
    assert core.safe is SafeBehaviour.HOLD
    before = core.state()
    core.step_physics(1)
    expected = actuation.kp * (last - before.q) - actuation.kd * before.dq
    np.testing.assert_allclose(core.state().tau, expected, rtol=1e-6, atol=1e-6)
    core.step_physics(499)  # 1 s: still standing on the held targets
    state = core.state()
    assert 0.36 < state.base_pos[2] < 0.54 and tilt(state) < 0.12
    assert np.abs(state.q - last).max() < 0.6  # gravity sag plus stance sway at kp 60


def test_command_loss_goes_limp(backend: SimBackend, actuation: Actuation) -> None:
    core = core_for(backend, actuation, on_command_loss="limp", command_timeout_s=0.1)
    for _ in range(25):
        send(core, default_joint_pos_array())
        core.lockstep_step()
    standing = core.state().base_pos[2]
    core.step_physics(50)
    assert core.safe is SafeBehaviour.LIMP
    before = core.state()
    core.step_physics(1)
    np.testing.assert_allclose(core.state().tau, -actuation.kd * before.dq, rtol=1e-6, atol=1e-6)  # damping only
    core.step_physics(499)
    assert core.state().base_pos[2] < standing - 0.15  # no stiffness: Spot folds down onto its belly


# --- determinism --------------------------------------------------------------------------------


def test_lockstep_replays_are_bit_identical(backend_name: str, actuation: Actuation) -> None:
    probe = fresh(backend_name)
    if not probe.deterministic:
        pytest.skip(f"{backend_name}: the backend declares deterministic=False (no bit-identical replays)")
    cores = [
        core_for(probe, actuation, command_delay_ms=4.0),
        core_for(fresh(backend_name), actuation, command_delay_ms=4.0),
    ]
    default = default_joint_pos_array()
    for tick in range(100):
        target = default + 0.15 * math.sin(tick * 0.2) * np.where(np.arange(12) % 2 == 0, 1.0, -1.0)
        for core in cores:
            if tick % 40 < 30:  # with gaps: the hold behaviour must replay identically too
                send(core, target)
            core.lockstep_step()
        first, second = (core.state() for core in cores)
        for field in ("q", "dq", "tau", "base_pos", "base_quat", "base_lin_vel_body", "base_ang_vel_body"):
            np.testing.assert_array_equal(getattr(first, field), getattr(second, field), err_msg=field)
        np.testing.assert_array_equal(first.imu_lin_acc, second.imu_lin_acc)
    assert cores[0].counters == cores[1].counters and cores[0].counters["command_losses"] > 0


# --- domain parameters --------------------------------------------------------------------------


def test_push_payload_and_friction(backend: SimBackend) -> None:
    backend.step(250)
    before = backend.state()
    kick = np.array([0.4, -0.3, 0.1])
    backend.push(kick)
    after = backend.state()
    world = quat_to_matrix(after.base_quat) @ after.base_lin_vel_body
    np.testing.assert_allclose(world - quat_to_matrix(before.base_quat) @ before.base_lin_vel_body, kick, atol=1e-3)

    def standing_height(payload_kg: float) -> float:
        backend.set_payload(payload_kg)
        backend.reset()
        backend.step(1500)
        return float(backend.state().base_pos[2])

    light, heavy = standing_height(0.0), standing_height(10.0)
    assert heavy < light - 0.01  # 10 kg on kp 60 legs sags visibly
    backend.set_friction(0.3)
    for bad in (lambda: backend.set_friction(-0.1), lambda: backend.set_payload(-100.0)):
        with pytest.raises(ValueError):
            bad()
