"""The bridge core without ROS: gains from the policy config, commands by name, the safe behaviours, timing."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from spot_policy.core import contract
from spot_sim_bridge.backends.mujoco import MujocoSpot
from spot_sim_bridge.core.backend import quat_to_matrix
from spot_sim_bridge.core.bridge import (
    Actuation,
    BridgeConfig,
    BridgeCore,
    CommandLoss,
    LockstepAction,
    LockstepGate,
    RealtimePacer,
    SafeBehaviour,
    command_delay_steps,
    load_actuation,
    make_backend,
    pose_by_name,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "spot_policy_node" / "test"))
from policy_fixtures import SPOT_FLAT_ENV_YAML, make_run

ISAAC = contract.ISAAC_JOINT_ORDER
DT = 0.002
KNEES = np.array([name.endswith("_kn") for name in ISAAC])
# A policy config whose gains and default pose differ from the backend's built-in Isaac values,
# so a test can tell that the bridge took them from the config.
CUSTOM_ENV_YAML = (
    SPOT_FLAT_ENV_YAML.replace("        .*_kn: -1.5", "        .*_kn: -1.4")
    .replace(
        "        stiffness: 60.0\n        damping: 1.5\n        joint_parameter_lookup",
        "        stiffness: 80.0\n        damping: 2.0\n        joint_parameter_lookup",
    )
    .replace("decimation: 10", "decimation: 8")
)


@pytest.fixture(scope="module")
def actuation(tmp_path_factory: pytest.TempPathFactory) -> Actuation:
    return load_actuation(make_run(tmp_path_factory.mktemp("logs")))


def make_core(actuation: Actuation, events: list[tuple[str, str]] | None = None, **config) -> BridgeCore:
    backend = make_backend("mujoco", actuation.physics_dt)
    sink = events.append if events is not None else None
    return BridgeCore(backend, actuation, BridgeConfig(**config), (lambda lvl, msg: sink((lvl, msg))) if sink else None)


def default_targets(actuation: Actuation) -> np.ndarray:
    return actuation.in_order(actuation.default_joint_pos, ISAAC)


def send(core: BridgeCore, targets: np.ndarray, names=ISAAC) -> bool:
    """A joint_command with ``targets`` (Isaac order) laid out in the order of ``names``."""
    order = contract.index_map([contract.canonical_joint_name(n) for n in names], ISAAC)
    positions = np.empty(12)
    positions[order] = targets
    return core.command(list(names), positions.tolist())


# --- policy config ------------------------------------------------------------------------------


def test_gains_pose_and_rates_come_from_the_policy_config(tmp_path: Path) -> None:
    actuation = load_actuation(make_run(tmp_path, env_yaml=CUSTOM_ENV_YAML))
    assert actuation.decimation == 8 and actuation.physics_dt == pytest.approx(DT)
    core = make_core(actuation)
    state = core.state()
    np.testing.assert_allclose(state.q[KNEES], -1.4)  # the reset pose is the config's default pose
    offset = 0.01 * np.arange(1, 13)
    assert send(core, state.q + offset)
    core.step_physics(1)  # from rest: tau = kp * offset
    np.testing.assert_allclose(core.state().tau, np.where(KNEES, 80.0, 60.0) * offset, rtol=1e-9)
    core.lockstep_step()
    assert core.physics_steps == 1 + 8


def test_physics_dt_mismatch_is_a_clear_error(actuation: Actuation) -> None:
    with pytest.raises(ValueError, match=r"physics dt mismatch: the policy was trained with sim.dt 0.002 s"):
        BridgeCore(MujocoSpot(physics_dt=0.001), actuation)


def test_unknown_backend_and_bad_settings_say_what_exists(actuation: Actuation) -> None:
    with pytest.raises(ValueError, match=r"^backend 'gazebo' does not exist; available: mujoco, isaac$"):
        make_backend("gazebo", DT)
    with pytest.raises(ValueError, match="must exceed one control period"):
        make_core(actuation, command_timeout_s=0.02)
    with pytest.raises(ValueError, match="'sit'"):
        make_core(actuation, on_command_loss="sit")
    with pytest.raises(ValueError, match="0-8 ms"):
        command_delay_steps(9.0, DT)
    assert [command_delay_steps(ms, DT) for ms in (0.0, 0.9, 1.1, 4.0, 8.0)] == [0, 0, 1, 2, 4]
    assert make_core(actuation, command_delay_ms=6.0).command_delay_steps == 3


# --- commands -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        ISAAC,
        contract.SDK_JOINT_ORDER,
        [contract.sdk_name(n) for n in contract.SDK_JOINT_ORDER],
        [contract.urdf_name(n) for n in reversed(ISAAC)],
    ],
    ids=["isaac", "sdk_order", "sdk_names", "urdf_reversed"],
)
def test_commands_are_mapped_by_name(actuation: Actuation, names) -> None:
    core = make_core(actuation)
    offset = 0.01 * np.arange(1, 13)  # a distinct value per joint (Isaac order)
    assert send(core, default_targets(actuation) + offset, names)
    core.step_physics(1)
    np.testing.assert_allclose(core.state().tau, 60.0 * offset, rtol=1e-9)


def test_extra_joints_in_a_command_are_ignored(actuation: Actuation) -> None:
    core = make_core(actuation)
    assert core.command([*ISAAC, "arm0.sh0"], [*default_targets(actuation).tolist(), 3.0])
    assert core.counters["commands"] == 1 and core.counters["rejected_commands"] == 0


def test_bad_commands_are_rejected_counted_logged_and_change_nothing(actuation: Actuation) -> None:
    events: list[tuple[str, str]] = []
    core = make_core(actuation, events)
    good = default_targets(actuation) + 0.05
    assert send(core, good)
    nan = good.copy()
    nan[3] = np.nan
    bad = [
        (list(ISAAC), nan.tolist(), "non-finite position for hr_hx"),
        (list(ISAAC[:-1]), good[:-1].tolist(), "missing joints hr_kn"),
        ([*ISAAC, "fl.hx"], [*good.tolist(), 0.0], "joints given twice: fl_hx"),
        (list(ISAAC), good[:6].tolist(), "12 names but 6 positions"),
        (list(ISAAC), np.full(12, np.inf).tolist(), "non-finite position for fl_hx"),
    ]
    for names, positions, reason in bad:
        assert not core.command(names, positions)
        assert core.last_rejection.startswith(reason), core.last_rejection
    assert core.counters == {**core.counters, "commands": 1, "rejected_commands": len(bad)}
    errors = [msg for level, msg in events if level == "error"]
    assert len(errors) == len(bad) and "joint_command rejected (non-finite position for hr_hx)" in errors[0]
    assert "still following the previous command (1 rejected so far)" in errors[0]
    # The previous targets still drive the joints.
    before = core.state()
    core.step_physics(1)
    np.testing.assert_allclose(core.state().tau, 60.0 * (good - before.q) - 1.5 * before.dq, rtol=1e-9, atol=1e-9)
    assert core.safe is SafeBehaviour.NONE
    # The same reason again within a second is counted but not logged again.
    assert not core.command(list(ISAAC), np.full(12, np.inf).tolist())
    assert core.counters["rejected_commands"] == len(bad) + 1
    assert len([1 for level, _ in events if level == "error"]) == len(bad)


def test_only_bad_commands_still_time_out(actuation: Actuation) -> None:
    core = make_core(actuation)
    assert send(core, default_targets(actuation))
    for _ in range(6):  # a nan command every 20 ms: the last valid one ages out
        core.command(list(ISAAC), [math.nan] * 12)
        core.lockstep_step()
    assert core.safe is SafeBehaviour.HOLD


# --- safe behaviour -----------------------------------------------------------------------------


def test_reset_pose_is_held_before_the_first_command(actuation: Actuation) -> None:
    events: list[tuple[str, str]] = []
    core = make_core(actuation, events, on_command_loss="limp")
    assert core.safe is SafeBehaviour.RESET_POSE and core.safe_active
    assert "holding the reset pose (PD on the default pose)" in core.safe_reason
    assert core.command_age_s is None
    before = core.state()
    core.step_physics(1)
    expected = 60.0 * (default_targets(actuation) - before.q) - 1.5 * before.dq
    np.testing.assert_allclose(core.state().tau, expected, rtol=1e-9, atol=1e-9)
    core.step_physics(1000)  # 2 s without any command: still the reset pose, never limp
    assert core.safe is SafeBehaviour.RESET_POSE and events == []
    state = core.state()
    assert 0.35 < state.base_pos[2] < 0.55 and np.abs(state.q - default_targets(actuation)).max() < 0.45
    assert send(core, default_targets(actuation))
    assert core.safe is SafeBehaviour.NONE and not core.safe_active and core.safe_reason == ""
    assert events == [("info", "joint_command received: following it (was holding the reset pose)")]


def test_hold_starts_exactly_at_the_timeout_and_keeps_the_last_targets(actuation: Actuation) -> None:
    events: list[tuple[str, str]] = []
    core = make_core(actuation, events, command_timeout_s=0.1)
    last = default_targets(actuation) + 0.1
    send(core, last)
    core.step_physics(49)
    assert core.safe is SafeBehaviour.NONE and core.command_age_s == pytest.approx(0.098)
    core.step_physics(1)  # age 0.100 s: the timeout
    assert core.safe is SafeBehaviour.HOLD and core.safe_active
    assert core.safe_reason == "no joint_command for 0.100 s (timeout 0.1 s): holding the last targets"
    assert events[-1] == ("warn", core.safe_reason) and core.counters["command_losses"] == 1
    before = core.state()
    core.step_physics(1)
    np.testing.assert_allclose(core.state().tau, 60.0 * (last - before.q) - 1.5 * before.dq, rtol=1e-9, atol=1e-9)
    core.step_physics(100)
    send(core, default_targets(actuation))
    assert core.safe is SafeBehaviour.NONE
    assert events[-1] == ("info", "joint_command resumed after 0.302 s: following it (was hold)")


def test_timeout_inside_a_long_step_enters_the_safe_behaviour_at_the_right_step(actuation: Actuation) -> None:
    limp, reference = make_core(actuation, on_command_loss="limp"), make_core(actuation, on_command_loss="limp")
    for core in (limp, reference):
        send(core, default_targets(actuation) + 0.2)
    limp.step_physics(80)  # one call across the timeout (50 steps)
    for _ in range(80):
        reference.step_physics(1)
    np.testing.assert_array_equal(limp.state().q, reference.state().q)
    assert limp.safe is SafeBehaviour.LIMP


def test_limp_applies_damping_only_then_recovers(actuation: Actuation) -> None:
    events: list[tuple[str, str]] = []
    core = make_core(actuation, events, on_command_loss="limp")
    send(core, default_targets(actuation) + 0.2)
    core.step_physics(50)
    assert core.safe is SafeBehaviour.LIMP
    assert core.safe_reason.endswith(": limp (damping only)") and events[-1][0] == "warn"
    moving = core.state()
    core.step_physics(1)
    np.testing.assert_allclose(core.state().tau, -1.5 * moving.dq, rtol=1e-9, atol=1e-12)
    target = default_targets(actuation)
    send(core, target)
    before = core.state()
    core.step_physics(1)
    np.testing.assert_allclose(core.state().tau, 60.0 * (target - before.q) - 1.5 * before.dq, rtol=1e-9, atol=1e-9)
    assert events[-1] == ("info", "joint_command resumed after 0.102 s: following it (was limp)")


# --- timing -------------------------------------------------------------------------------------


def test_lockstep_advances_exactly_one_control_period(actuation: Actuation) -> None:
    core = make_core(actuation)
    for k in range(1, 6):
        send(core, default_targets(actuation))
        core.lockstep_step()
        assert core.physics_steps == 10 * k
        assert core.sim_time_ns == k * 20_000_000
        assert core.state().sim_time == pytest.approx(0.02 * k)


def test_two_cores_with_identical_commands_are_bit_identical(actuation: Actuation) -> None:
    first, second = (make_core(actuation, command_delay_ms=4.0) for _ in range(2))
    default = default_targets(actuation)
    for tick in range(150):
        target = default + 0.15 * math.sin(tick * 0.2) * np.sign(np.arange(12) % 2 - 0.5)
        states = []
        for core in (first, second):
            if tick % 40 < 30:  # with gaps: the hold behaviour kicks in and must be identical too
                send(core, target)
            core.lockstep_step()
            states.append(core.state())
        for field in ("q", "dq", "tau", "base_pos", "base_quat", "base_lin_vel_body", "imu_lin_acc"):
            np.testing.assert_array_equal(getattr(states[0], field), getattr(states[1], field))
    assert first.counters == second.counters and first.counters["command_losses"] > 0


def test_state_is_due_at_the_state_rate_and_advance_to_follows_sim_time(actuation: Actuation) -> None:
    core = make_core(actuation, state_rate_hz=333.0)
    due = 0
    for _ in range(1500):  # 3 s
        core.step_physics(1)
        due += core.state_due()
    assert abs(due - 999) <= 1
    assert core.advance_to(core.sim_time + 0.0101) == 5
    assert core.advance_to(core.sim_time - 1.0) == 0


def test_realtime_pacer_keeps_the_period_and_drops_a_stall() -> None:
    pacer = RealtimePacer(DT)
    pacer.restart()
    steps, t0 = 0, pacer._clock()
    while steps < 150:
        steps += pacer.wait()
    elapsed = pacer._clock() - t0
    assert 0.29 < elapsed - pacer.dropped_steps * DT < 0.33  # a stall past 50 ms here drops (and counts) steps
    assert pacer.period_jitter_s.median < 1e-3

    now = [0.0]
    fake = RealtimePacer(DT, max_catch_up=5, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert [fake.wait() for _ in range(3)] == [1, 1, 1]
    now[0] += 3.5 * DT  # late by 3.5 periods: the 3 missed steps run back to back
    assert fake.wait() == 3
    now[0] += 1.0  # a stall of 500 periods: catch up 5, drop the rest
    assert fake.wait() == 5 and fake.dropped_steps == 500 - 5
    assert fake.wait() == 1


def test_lockstep_gate_keeps_one_state_in_flight_across_a_reset() -> None:
    gate = LockstepGate(wait_s=0.2)
    assert gate.reset(0.0) is LockstepAction.PUBLISH  # never commanded: publish the reset state at once
    gate.published(0.0)
    assert gate.command(0.01) is LockstepAction.STEP
    gate.published(0.011)
    # A reset while the policy works on the state published at 0.011: its answer is dropped and
    # the reset state is published in its place (one state in flight, not two).
    assert gate.reset(0.012) is LockstepAction.NOTHING
    assert gate.command(0.013) is LockstepAction.PUBLISH and gate.stale_dropped == 1
    gate.published(0.013)
    assert gate.command(0.015) is LockstepAction.STEP
    gate.published(0.016)
    # The answer never comes (the policy stopped): the reset state goes out after the answer window.
    assert gate.reset(0.02) is LockstepAction.NOTHING
    assert gate.due() == pytest.approx(0.12)  # when timer() will act: the spin waits until then
    assert gate.timer(0.05) is LockstepAction.NOTHING
    assert gate.timer(0.13) is LockstepAction.PUBLISH
    gate.published(0.13)
    # No command for wait_s: advance anyway; a policy idle for long gets a reset state at once.
    assert gate.due() == pytest.approx(0.13 + 0.9 * 0.2)
    assert gate.timer(0.2) is LockstepAction.NOTHING
    assert gate.timer(gate.due()) is LockstepAction.STEP
    assert gate.reset(5.0) is LockstepAction.PUBLISH
    forever = LockstepGate(wait_s=0.0)
    forever.published(0.0)
    assert forever.timer(100.0) is LockstepAction.NOTHING and forever.timer_period_s == pytest.approx(0.1)
    assert forever.due() == float("inf")  # only an answer moves it on


# --- services -----------------------------------------------------------------------------------


def test_reset_to_a_given_pose_keeps_sim_time(actuation: Actuation) -> None:
    events: list[tuple[str, str]] = []
    core = make_core(actuation, events)
    send(core, default_targets(actuation) + 0.1)
    core.step_physics(300)
    pose = pose_by_name(["fl.kn", "front_right_knee", "hl_hy"], [-1.2, -1.1, 1.0])
    assert pose == {"fl_kn": -1.2, "fr_kn": -1.1, "hl_hy": 1.0}
    core.reset(pose)
    state = core.state()
    expected = dict(zip(ISAAC, default_targets(actuation), strict=True)) | pose
    np.testing.assert_allclose(state.q, [expected[n] for n in ISAAC])
    assert not state.dq.any() and not state.base_lin_vel_body.any()
    assert core.sim_time == pytest.approx(0.6)  # the clock never goes back
    assert core.safe is SafeBehaviour.RESET_POSE and core.command_age_s is None
    assert events[-1] == ("info", "reset with 3 joints set: holding the reset pose until the next joint_command")
    core.step_physics(200)  # no timeout after a reset: the reset pose is held
    assert core.safe is SafeBehaviour.RESET_POSE
    with pytest.raises(ValueError, match="not one of Spot's leg joints"):
        pose_by_name(["arm0.sh0"], [0.0])
    with pytest.raises(ValueError, match="nan"):
        pose_by_name(["fl_kn"], [math.nan])


def test_push_changes_the_base_velocity(actuation: Actuation) -> None:
    core = make_core(actuation)
    core.step_physics(250)
    before = core.state()
    core.push([0.0, 0.5, 0.0])
    after = core.state()
    world = quat_to_matrix(after.base_quat) @ after.base_lin_vel_body
    before_world = quat_to_matrix(before.base_quat) @ before.base_lin_vel_body
    np.testing.assert_allclose(world - before_world, [0.0, 0.5, 0.0], atol=1e-9)
    core.step_physics(50)
    assert core.state().base_pos[1] - before.base_pos[1] > 0.005
    with pytest.raises(ValueError, match="3 finite values"):
        core.push([0.0, math.inf, 0.0])


def test_friction_and_payload_reach_the_backend(actuation: Actuation) -> None:
    core = make_core(actuation)
    backend = core.backend
    assert isinstance(backend, MujocoSpot)
    core.set_payload(5.0)
    assert backend.total_mass == pytest.approx(36.6, abs=0.05)
    core.set_friction(0.3)
    assert backend.mj_model.geom("floor").friction[0] == pytest.approx(0.3)
    with pytest.raises(ValueError):
        core.set_payload(-100.0)


def test_loss_behaviour_enum_accepts_strings(actuation: Actuation) -> None:
    assert make_core(actuation, on_command_loss="limp").config.on_command_loss is CommandLoss.LIMP
