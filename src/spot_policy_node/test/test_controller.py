"""The controller's modes, safety rules and action processing, without ROS."""

from __future__ import annotations

import numpy as np
import pytest

from spot_policy.core import contract
from spot_policy.core.controller import ControllerConfig, Mode, PolicyController
from spot_policy.core.loader import load_policy
from spot_policy.core.policy_spec import PolicySpec

from policy_fixtures import make_run

DT = 0.02


class ScriptedPolicy:
    """Returns preset raw actions and records the observations it was given."""

    def __init__(self, action: np.ndarray) -> None:
        self.action = np.asarray(action, dtype=np.float32)
        self.seen: list[np.ndarray] = []

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.seen.append(obs.copy())
        return self.action.copy()


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> PolicySpec:
    return load_policy(make_run(tmp_path_factory.mktemp("run")), providers=["cpu"]).spec


def feed(c: PolicyController, now: float, q: np.ndarray | None = None, names=contract.SDK_JOINT_ORDER) -> None:
    """All three state inputs at time ``now``; joints given in SDK order to exercise the name mapping."""
    q_isaac = c.spec.default_joint_pos if q is None else q
    order = contract.index_map(contract.ISAAC_JOINT_ORDER, [contract.canonical_joint_name(n) for n in names])
    c.joint_state(names, q_isaac[order], np.zeros(len(names)), now, stamp=now)
    c.imu([0, 0, 0, 1.0], [0, 0, 0], now, stamp=now)
    c.odom([0, 0, 0], now, stamp=now)


def make(spec: PolicySpec, action=None, **config) -> tuple[PolicyController, ScriptedPolicy, list]:
    events: list[tuple[str, str]] = []
    policy = ScriptedPolicy(np.zeros(12) if action is None else action)
    c = PolicyController(spec, policy, ControllerConfig(**config), lambda lvl, msg: events.append((lvl, msg)))
    return c, policy, events


def test_idle_publishes_nothing_and_stand_interpolates(spec: PolicySpec) -> None:
    c, _, _ = make(spec, stand_duration_s=1.0)
    start = spec.default_joint_pos + 0.15  # within stand_hold_beyond_rad (0.2) of the default pose
    feed(c, 0.0, start)
    assert c.step(0.0) is None
    ok, _ = c.request(Mode.STAND, 0.0)
    assert ok and c.mode is Mode.STAND
    feed(c, 0.5, start)
    half = c.step(0.5)
    np.testing.assert_allclose(half.positions, np.clip(start - 0.075, spec.joint_lower, spec.joint_upper))
    feed(c, 1.5, start)
    np.testing.assert_allclose(c.step(1.5).positions, spec.default_joint_pos)
    # Names come back as the bridge sent them (SDK spelling kept, articulation order).
    assert c.step(1.5).names == tuple(contract.ISAAC_JOINT_ORDER)


#: Spot's own stand (a real robot's record, as the emulator stands) and the knee torque it carries.
SPOT_STAND = np.array([0.0138, -0.0138, 0.0138, -0.0138, 0.7961, 0.7961, 0.7961, 0.7961, *[-1.5724] * 4])
SPOT_STAND_LOAD = np.array([-1.0, 1.0, -1.0, 1.0, 8.0, 8.0, 2.3, 2.3, 16.9, 16.9, 22.0, 22.0])


def test_stand_from_idle_far_from_the_default_pose_leaves_the_robot_to_its_own_controller(spec: PolicySpec) -> None:
    """From Spot's own stand (hind hy 0.3 rad from the default pose): stand publishes nothing, however
    long (the robot's stand holds it; the bridge keeps it there); a second stand request changes nothing."""
    c, _, events = make(spec, stand_duration_s=1.0)
    for t in (0.0, 0.5, 1.0, 3.0):
        c.joint_state(contract.ISAAC_JOINT_ORDER, SPOT_STAND, np.zeros(12), t, t, SPOT_STAND_LOAD)
        if t == 0.0:
            assert c.request(Mode.STAND, 0.0) == (True, "standing")
        assert c.mode is Mode.STAND and c.step(t) is None
    assert "publishing nothing leaves it there" in events[-1][1] and "0.29 rad from the default pose" in events[-1][1]
    assert c.request(Mode.STAND, 3.0) == (True, "standing") and c.step(3.0) is None


def test_stand_from_walk_moves_to_the_default_pose_even_from_far(spec: PolicySpec) -> None:
    raw = np.full(12, 1.5)  # 0.3 rad from the default pose at scale 0.2
    c, _, _ = make(spec, raw, stand_duration_s=1.0, soft_start_s=0.0)
    feed(c, 0.0)
    c.cmd_vel(0.0, 0.0, 0.0, 0.0)
    assert c.request(Mode.WALK, 0.0)[0]
    last = c.step(0.0).positions
    tau = (last - spec.default_joint_pos) * 60.0  # the PD torque of the policy's target
    c.joint_state(contract.ISAAC_JOINT_ORDER, spec.default_joint_pos, np.zeros(12), DT, DT, tau)
    assert c.request(Mode.STAND, DT)[0]
    np.testing.assert_allclose(c.step(DT).positions, last, atol=1e-9)  # from the policy's own target
    feed(c, DT + 1.0)
    np.testing.assert_allclose(c.step(DT + 1.0).positions, spec.default_joint_pos)


def test_walk_soft_start_blends_from_the_hand_over_target_to_the_policy(spec: PolicySpec) -> None:
    """From Spot's stand (the stand published nothing): the first target is the documented rule's
    q* = q + (tau + kd dq) / kp moved 1/N toward the policy; step k of N publishes q* + k/N (policy - q*):
    no jump at the hand-over, and no step in the soft start larger than 1/N of the way."""
    raw = np.linspace(-1, 1, 12)
    c, _, _ = make(spec, raw, stand_duration_s=1.0, soft_start_s=0.1)  # 5 steps
    dq = np.linspace(-0.05, 0.05, 12)

    def inputs(t: float) -> None:
        c.joint_state(contract.ISAAC_JOINT_ORDER, SPOT_STAND, dq, t, t, SPOT_STAND_LOAD)
        c.imu([0, 0, 0, 1.0], [0, 0, 0], t, stamp=t)
        c.odom([0, 0, 0], t, stamp=t)
        c.cmd_vel(0.0, 0.0, 0.0, t)

    inputs(0.0)
    assert c.request(Mode.STAND, 0.0)[0] and c.step(0.0) is None
    inputs(DT)
    assert c.request(Mode.WALK, DT)[0]
    q_star = np.clip(SPOT_STAND + (SPOT_STAND_LOAD + 1.5 * dq) / 60.0, spec.joint_lower, spec.joint_upper)
    policy = np.clip(spec.default_joint_pos + 0.2 * raw, spec.joint_lower, spec.joint_upper)
    outputs = []
    for k in range(1, 8):
        t = k * DT
        inputs(t)
        out = c.step(t).positions
        np.testing.assert_allclose(out, q_star + min(1.0, k / 5) * (policy - q_star), atol=1e-9)
        outputs.append(out)
    # The documented starting rule, and the first target's distance from it and from the measured pose.
    assert np.max(np.abs(outputs[0] - q_star)) <= np.max(np.abs(policy - q_star)) / 5 + 1e-9
    assert np.max(np.abs(q_star - SPOT_STAND)) <= (22.0 + 1.5 * 0.05) / 60.0 + 1e-9  # the load it carries
    steps = np.abs(np.diff(np.array(outputs), axis=0)).max(axis=1)
    assert steps[:4].max() <= np.abs(policy - q_star).max() / 5 + 1e-9 and steps[4:].max() < 1e-9


def test_walk_after_a_stand_that_moved_blends_from_its_last_target(spec: PolicySpec) -> None:
    raw = np.linspace(-1, 1, 12)
    c, _, _ = make(spec, raw, stand_duration_s=1.0, soft_start_s=0.1)
    start = spec.default_joint_pos + 0.1
    feed(c, 0.0, start)
    c.cmd_vel(0.0, 0.0, 0.0, 0.0)
    assert c.request(Mode.STAND, 0.0)[0]
    last = c.step(0.0).positions  # not yet at the default pose
    np.testing.assert_allclose(last, np.clip(start, spec.joint_lower, spec.joint_upper))
    feed(c, DT, start)
    c.cmd_vel(0.0, 0.0, 0.0, DT)
    assert c.request(Mode.WALK, DT)[0]
    policy = np.clip(spec.default_joint_pos + 0.2 * raw, spec.joint_lower, spec.joint_upper)
    np.testing.assert_allclose(c.step(DT).positions, last + 0.2 * (policy - last), atol=1e-9)


def test_names_received_are_names_published(spec: PolicySpec) -> None:
    c, _, _ = make(spec)
    urdf = [contract.urdf_name(j) for j in contract.SDK_JOINT_ORDER] + ["arm0_sh0"]
    q = spec.default_joint_pos
    order = contract.index_map(contract.ISAAC_JOINT_ORDER, contract.SDK_JOINT_ORDER)
    c.joint_state(urdf, [*q[order], 0.0], np.zeros(13), 0.0)
    assert c.request(Mode.STAND, 0.0)[0]
    command = c.step(0.0)
    assert command.names == tuple(contract.urdf_name(j) for j in contract.ISAAC_JOINT_ORDER)


def test_walk_applies_default_plus_scale_times_action_with_soft_start(spec: PolicySpec) -> None:
    raw = np.linspace(-1, 1, 12)
    c, policy, _ = make(spec, raw, soft_start_s=0.1)  # 5 steps at 50 Hz
    feed(c, 0.0)
    c.cmd_vel(0.5, 0.0, 0.2, 0.0)
    assert c.request(Mode.WALK, 0.0) == (True, "walking")
    outputs = []
    for k in range(7):
        t = k * DT
        feed(c, t)
        c.cmd_vel(0.5, 0.0, 0.2, t)
        outputs.append(c.step(t).positions)
    for k, out in enumerate(outputs):
        ramp = min(1.0, (k + 1) / 5)
        expected = np.clip(spec.default_joint_pos + ramp * 0.2 * raw, spec.joint_lower, spec.joint_upper)
        np.testing.assert_allclose(out, expected, atol=1e-6)
    # The policy saw the command and, from the second step on, its own raw output as last_action.
    np.testing.assert_allclose(policy.seen[0][9:12], [0.5, 0.0, 0.2])
    np.testing.assert_allclose(policy.seen[0][36:48], 0.0)
    np.testing.assert_allclose(policy.seen[1][36:48], raw, atol=1e-6)


def test_targets_clipped_to_joint_limits(spec: PolicySpec) -> None:
    c, _, _ = make(spec, np.full(12, 50.0), soft_start_s=0.0)
    feed(c, 0.0)
    c.request(Mode.WALK, 0.0)
    out = c.step(0.0).positions
    np.testing.assert_allclose(out, spec.joint_upper)
    assert c.counters["joint_limit_clips"] == 12


def test_command_clipped_to_trained_ranges_and_zero_after_timeout(spec: PolicySpec) -> None:
    c, policy, events = make(spec, cmd_vel_timeout_s=0.5)
    feed(c, 0.0)
    c.cmd_vel(9.0, -9.0, 0.5, 0.0)
    c.request(Mode.WALK, 0.0)
    c.step(0.0)
    np.testing.assert_allclose(policy.seen[-1][9:12], [3.0, -1.5, 0.5])
    assert c.counters["command_clips"] == 1
    for k in range(1, 40):
        feed(c, k * DT)
        c.step(k * DT)
    np.testing.assert_allclose(policy.seen[-1][9:12], 0.0)  # 0.78 s after the last cmd_vel
    assert c.mode is Mode.WALK and c.counters["cmd_vel_timeouts"] == 1
    assert any("cmd_vel timed out" in msg for _, msg in events)


@pytest.mark.parametrize("stale", ["joint_states", "imu/data", "odom"])
def test_stale_input_faults_naming_it(spec: PolicySpec, stale: str) -> None:
    c, _, events = make(spec)
    feed(c, 0.0)
    c.request(Mode.WALK, 0.0)
    t = 0.0
    for k in range(1, 6):
        t = k * DT
        if stale != "joint_states":
            c.joint_state(contract.ISAAC_JOINT_ORDER, spec.default_joint_pos, np.zeros(12), t, t)
        if stale != "imu/data":
            c.imu([0, 0, 0, 1.0], [0, 0, 0], t, t)
        if stale != "odom":
            c.odom([0, 0, 0], t, t)
        out = c.step(t)
        if c.mode is Mode.FAULT:
            break
    assert c.mode is Mode.FAULT and out is None
    # Limit: three control periods (60 ms); the fault comes on the first step past it.
    assert t == pytest.approx(0.08)
    assert c.fault_reason.startswith(f"{stale} is stale")
    assert events[-1][0] == "error" and stale in events[-1][1]


def test_fault_latches_until_reset(spec: PolicySpec) -> None:
    c, _, _ = make(spec)
    feed(c, 0.0)
    c.request(Mode.WALK, 0.0)
    c.imu([0, 0, float("nan"), 1.0], [0, 0, 0], 0.01)
    assert c.mode is Mode.FAULT and "imu/data has NaN/inf orientation" in c.fault_reason
    feed(c, 0.02)
    assert c.step(0.02) is None
    assert c.request(Mode.WALK, 0.02)[0] is False
    assert c.request(Mode.STAND, 0.02)[0] is False
    assert c.request(Mode.IDLE, 0.02)[0] is False and c.mode is Mode.FAULT
    assert c.reset()[0] and c.mode is Mode.IDLE
    assert c.request(Mode.WALK, 0.02)[0] and c.step(0.02) is not None


@pytest.mark.parametrize(
    ("field", "reason"),
    [("position", "joint_states has NaN/inf position for hr_kn"), ("velocity", "NaN/inf velocity for hr_kn")],
)
def test_nan_in_joint_states_faults(spec: PolicySpec, field: str, reason: str) -> None:
    c, _, _ = make(spec)
    feed(c, 0.0)
    c.request(Mode.STAND, 0.0)
    q, dq = spec.default_joint_pos.copy(), np.zeros(12)
    (q if field == "position" else dq)[11] = np.inf if field == "velocity" else np.nan
    c.joint_state(contract.ISAAC_JOINT_ORDER, q, dq, 0.01)
    assert c.mode is Mode.FAULT and reason in c.fault_reason


def test_nan_in_cmd_vel_and_policy_output_fault(spec: PolicySpec) -> None:
    c, _, _ = make(spec)
    c.cmd_vel(float("nan"), 0, 0, 0.0)
    assert c.mode is Mode.FAULT and "cmd_vel has NaN/inf" in c.fault_reason
    c, _policy, _ = make(spec, np.full(12, np.nan))
    feed(c, 0.0)
    c.request(Mode.WALK, 0.0)
    assert c.step(0.0) is None and c.mode is Mode.FAULT and "policy output holds NaN/inf" in c.fault_reason


def test_missing_joints_refuse_to_leave_idle(spec: PolicySpec) -> None:
    c, _, _ = make(spec)
    names = [j for j in contract.ISAAC_JOINT_ORDER if j not in ("fl_kn", "hr_hy")]
    c.joint_state(names, np.zeros(10), np.zeros(10), 0.0)
    c.imu([0, 0, 0, 1.0], [0, 0, 0], 0.0)
    c.odom([0, 0, 0], 0.0)
    ok, message = c.request(Mode.STAND, 0.0)
    assert not ok and c.mode is Mode.IDLE
    assert "joint_states lacks joints hr_hy, fl_kn" in message
    assert not c.request(Mode.WALK, 0.0)[0]


def test_missing_joints_while_active_fault(spec: PolicySpec) -> None:
    c, _, _ = make(spec)
    feed(c, 0.0)
    c.request(Mode.WALK, 0.0)
    c.joint_state(contract.ISAAC_JOINT_ORDER[:11], np.zeros(11), np.zeros(11), 0.01)
    assert c.mode is Mode.FAULT and "lacks joints hr_kn" in c.fault_reason


def test_walk_refused_without_inputs(spec: PolicySpec) -> None:
    c, _, _ = make(spec)
    ok, message = c.request(Mode.WALK, 0.0)
    assert not ok and "joint_states never received" in message and "imu/data never received" in message
    feed(c, 0.0)
    ok, message = c.request(Mode.WALK, 1.0)
    assert not ok and "imu/data is stale (1.000 s old, limit 0.060 s)" in message


def test_a_request_for_the_mode_in_force_is_accepted_and_the_step_still_judges_the_inputs(spec: PolicySpec) -> None:
    c, _, _ = make(spec)
    feed(c, 0.0)
    assert c.request(Mode.WALK, 0.0)[0]
    # The inputs are 70 ms old when the request lands (a machine pause): walking goes on...
    assert c.request(Mode.WALK, 0.07) == (True, "walking")
    assert c.mode is Mode.WALK
    # ...and the next step, still without fresh inputs, faults on them as always.
    assert c.step(0.08) is None and c.mode is Mode.FAULT and "is stale" in c.fault_reason
    # A switch still checks the inputs first.
    c, _, _ = make(spec)
    feed(c, 0.0)
    assert c.request(Mode.WALK, 0.0)[0]
    ok, message = c.request(Mode.STAND, 0.07)
    assert not ok and "joint_states is stale" in message and c.mode is Mode.WALK


def test_input_triggered_step_waits_for_inputs_of_the_same_instant(spec: PolicySpec) -> None:
    c, _, _ = make(spec)
    feed(c, 0.0)
    c.request(Mode.WALK, 0.0)
    assert c.input_step_due()
    c.joint_state(contract.ISAAC_JOINT_ORDER, spec.default_joint_pos, np.zeros(12), 0.02, stamp=0.02)
    assert not c.input_step_due()  # imu and odom of t=0.02 not here yet
    c.imu([0, 0, 0, 1.0], [0, 0, 0], 0.02, stamp=0.02)
    assert not c.input_step_due()
    c.odom([0, 0, 0], 0.02, stamp=0.02)
    assert c.input_step_due() and not c.input_step_due()  # once per joint_states


def test_stop_goes_idle_and_status_reports(spec: PolicySpec) -> None:
    c, _, _ = make(spec)
    feed(c, 0.0)
    c.request(Mode.WALK, 0.0)
    for k in range(5):
        feed(c, k * DT)
        c.step(k * DT)
    assert c.request(Mode.IDLE, 0.1) == (True, "idle: publishing nothing")
    assert c.step(0.1) is None
    status = c.status(0.1)
    assert status["mode"] == "idle" and status["steps"] == 5
    assert status["input_ages_s"]["joint_states"] == pytest.approx(0.02)
    assert status["inference_us_median"] > 0


def test_stand_starts_bumpless_from_the_torque_the_joints_carry(spec: PolicySpec) -> None:
    """q* = q + (tau + kd dq) / kp: the hand-over keeps the torque; without efforts, the measured pose."""
    c, _, _ = make(spec, stand_duration_s=1.0)
    q = spec.default_joint_pos - 0.1
    dq = np.linspace(-0.5, 0.5, 12)
    tau = np.full(12, 6.0)
    c.joint_state(contract.ISAAC_JOINT_ORDER, q, dq, 0.0, 0.0, tau)
    assert c.request(Mode.STAND, 0.0)[0]
    expected = np.clip(q + (tau + 1.5 * dq) / 60.0, spec.joint_lower, spec.joint_upper)
    np.testing.assert_allclose(c.step(0.0).positions, expected)
    c2, _, _ = make(spec, stand_duration_s=1.0)
    c2.joint_state(contract.ISAAC_JOINT_ORDER, q, dq, 0.0, 0.0)  # no effort field
    assert c2.request(Mode.STAND, 0.0)[0]
    np.testing.assert_allclose(c2.step(0.0).positions, q)


# --- implausible values and unreadable messages (issue 14) --------------------------------------


def walking(spec: PolicySpec) -> tuple[PolicyController, list]:
    c, _, events = make(spec, soft_start_s=0.0)
    feed(c, 0.0)
    c.cmd_vel(0.5, 0.0, 0.0, 0.0)
    assert c.request(Mode.WALK, 0.0)[0]
    assert c.step(0.0) is not None
    return c, events


@pytest.mark.parametrize(
    ("corrupt", "words"),
    [
        (lambda q, dq: (np.full(12, 3.0), dq), ("fl_hx position 3.000 rad", "beyond its range [-0.785, 0.785]")),
        (lambda q, dq: (np.where(np.arange(12) == 8, 1e30, q), dq), ("fl_kn position 1000000", "by more than 0.3 rad")),
        (lambda q, dq: (q, np.full(12, 500.0)), ("fl_hx velocity 500.0 rad/s", "beyond 40 rad/s")),
    ],
)
def test_implausible_joint_values_are_faults_naming_value_and_limit(spec: PolicySpec, corrupt, words) -> None:
    """A corrupted encoder must not drive the policy into full-range targets (issue 14)."""
    c, _ = walking(spec)
    q, dq = corrupt(spec.default_joint_pos.copy(), np.zeros(12))
    c.joint_state(contract.ISAAC_JOINT_ORDER, q, dq, 0.02, stamp=0.02)
    assert c.mode is Mode.FAULT and c.fault_reason.startswith("joint_states: "), c.fault_reason
    assert all(w in c.fault_reason for w in words), c.fault_reason
    assert c.step(0.02) is None  # nothing published


def test_other_implausible_states_are_faults(spec: PolicySpec) -> None:
    cases = [
        (lambda c: c.imu([0, 0, 0, 0.5], [0, 0, 0], 0.02, 0.02), "imu/data: orientation quaternion has norm 0.500"),
        (lambda c: c.imu([0, 0, 0, 1.0], [0, 0, 50.0], 0.02, 0.02), "imu/data: angular velocity 50.0 rad/s"),
        (lambda c: c.odom([50.0, 0, 0], 0.02, 0.02), "odom: base speed 50.0 m/s is beyond 8 m/s"),
        (lambda c: c.odom([0.1, 0, 0], 0.02, 30.0), "odom: stamp 30.000 s is 29.980 s ahead"),
        (
            lambda c: c.joint_state([*contract.ISAAC_JOINT_ORDER[:11], "fl_hx"], np.zeros(12), np.zeros(12), 0.02),
            "joint_states names fl_hx more than once",
        ),
    ]
    for act, words in cases:
        c, _ = walking(spec)
        act(c)
        assert c.mode is Mode.FAULT and c.fault_reason.startswith(words), (words, c.fault_reason)


def test_a_real_robots_values_are_never_implausible(spec: PolicySpec) -> None:
    """Joints at their limits, fast gait speeds, a sprinting and turning base: no fault."""
    c, _ = walking(spec)
    q = spec.joint_lower - 0.05  # a little overshoot under impact
    c.joint_state(contract.ISAAC_JOINT_ORDER, q, np.full(12, 15.0), 0.02, stamp=0.02)
    c.imu([0, 0, np.sin(0.5), np.cos(0.5)], [0.5, 0.3, 3.0], 0.02, stamp=0.02)
    c.odom([2.5, -1.0, 0.2], 0.02, stamp=0.02)
    assert c.mode is Mode.WALK, c.fault_reason


def test_an_unreadable_message_faults_only_when_the_mode_needs_its_input(spec: PolicySpec) -> None:
    c, _, _ = make(spec)
    feed(c, 0.0)
    c.bad_input("joint_states", "12 bytes: truncated", 0.0)
    assert c.mode is Mode.IDLE and c.counters["bad_messages"] == 1  # idle needs nothing
    c, _ = walking(spec)
    c.bad_input("cmd_vel", "random bytes", 0.02)
    assert c.mode is Mode.WALK  # a lost command is a zero command, not a fault
    c.bad_input("imu/data", "random bytes", 0.02)
    assert c.mode is Mode.FAULT and c.fault_reason == "imu/data: a message could not be read (random bytes)"


@pytest.mark.parametrize("base", [0.0, 123.46, 1_796_333_550.52], ids=["zero", "sim", "epoch"])
def test_an_input_exactly_at_its_limit_is_not_stale_whatever_the_rounding(base: float) -> None:
    """Two dropped instants leave an input exactly three periods old when the node's control timer
    checks it (lockstep, with drops); whether that read as stale depended on the seconds' digits
    and on whether the timer or the next state came first. At the limit is fresh; past it, stale."""
    from spot_policy.core.safety import InputWatchdog, SafetyLimits

    limits = SafetyLimits.for_control_dt(DT)
    watchdog = InputWatchdog(limits)
    for k in range(200):  # many digit patterns: (base + (k + 3) * DT) - (base + k * DT) != 0.06 exactly
        t = base + k * DT
        watchdog.seen("odom", t)
        assert watchdog.problems(["odom"], base + (k + 3) * DT) == []
        assert watchdog.problems(["odom"], t + limits.input_timeout_s + 2e-5) != []
        watchdog.seen("cmd_vel", t)
        assert watchdog.cmd_vel_fresh(t + limits.cmd_vel_timeout_s)
        assert not watchdog.cmd_vel_fresh(t + limits.cmd_vel_timeout_s + 2e-5)
