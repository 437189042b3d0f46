"""The emulator's body without gRPC: its timing rules on an injected clock, its stalls, its postures.

Most tests step the physics themselves (``RobotBody.advance``) on a clock they set, so the order of
arrivals, expiries and physics steps is exact, not a matter of this machine's load.
"""

from __future__ import annotations

import threading
import time

import mujoco
import numpy as np
import pytest

from spot_hw_bridge.emulator.body import (
    ISAAC,
    ROBOT_KD,
    ROBOT_KP,
    SDK_FROM_ISAAC,
    Behaviour,
    ExpiryMode,
    RobotBody,
)
from spot_hw_bridge.emulator.posture import BodyOffset, spot_stand_angles

MS = 1_000_000
T0 = 1_000_000_000_000


class Clock:
    def __init__(self) -> None:
        self.ns = T0

    def __call__(self) -> int:
        return self.ns


class Reports:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, kind: str, message: str) -> None:
        self.lines.append((kind, message))

    def of(self, kind: str) -> list[str]:
        return [m for k, m in self.lines if k == kind]


def run(body: RobotBody, clock: Clock, seconds: float) -> None:
    """Real-time physics on the injected clock: one step per 2 ms."""
    for _ in range(round(seconds / 0.002)):
        clock.ns += 2 * MS
        body.advance(1, clock.ns)


def standing_body(expiry: ExpiryMode = ExpiryMode.STAND) -> tuple[RobotBody, Clock, Reports]:
    clock, reports = Clock(), Reports()
    body = RobotBody(clock, expiry=expiry, report=reports)
    run(body, clock, 0.1)
    body.power_on()
    run(body, clock, 0.4)
    body.command("stand")
    run(body, clock, 2.5)
    assert body.standing
    return body, clock, reports


def send(body: RobotBody, q: np.ndarray, end_ns: int, key: int, gains: bool = False) -> str:
    kp, kd = (ROBOT_KP[SDK_FROM_ISAAC], ROBOT_KD[SDK_FROM_ISAAC]) if gains else (None, None)
    return body.joint_command(q[SDK_FROM_ISAAC], kp, kd, end_ns, key)


def test_a_command_that_arrived_before_the_last_one_expired_counts_when_physics_catches_up_late() -> None:
    """The issue's race: physics behind (catching up a burst), a command arrived 1 ms before the
    previous one's end_time. Arrival is stamped on receipt, each step applies what arrived by its own
    time before judging expiry: no expiry. One arriving 5 ms after that end_time: the steps at +2 and
    +4 ms find nothing in force (a lapse), the one at +6 ms resumes."""
    body, clock, reports = standing_body()
    q = body.snapshot.q.copy()
    assert send(body, q, clock.ns + 10 * MS, 1, gains=True) == ""
    body.command("joint")
    clock.ns += 9 * MS  # the physics thread is stalled meanwhile: no step runs
    arrived = clock.ns
    assert send(body, q, clock.ns + 100 * MS, 2) == ""
    clock.ns += 11 * MS
    body.advance(10, clock.ns)  # the catch-up burst: steps at -18 .. 0 ms
    assert body.counters["joint_control_expiries"] == 0 and not body.joint_lapsed
    assert body.last_key == 2 and body.last_received_ns == arrived
    # The same, but the next command arrives 5 ms after the end_time of the one in force.
    end = clock.ns + 10 * MS
    assert send(body, q, end, 3) == ""
    clock.ns = end + 5 * MS
    assert send(body, q, clock.ns + 100 * MS, 4) == ""
    clock.ns += 5 * MS
    body.advance(10, clock.ns)
    assert body.counters["joint_control_expiries"] == 1 and body.counters["joint_control_resumes"] == 1
    assert body.behaviour is Behaviour.JOINT and not body.joint_lapsed
    assert len(reports.of("expiry")) == 1 and "joint command 3 expired" in reports.of("expiry")[0]
    assert "resumed after 4 ms" in reports.of("joint")[-1], reports.of("joint")


def test_a_command_arriving_after_its_end_time_is_refused_with_the_reason() -> None:
    body, clock, reports = standing_body()
    q = body.snapshot.q.copy()
    why = send(body, q, clock.ns - 3 * MS, 7, gains=True)
    assert why == "joint command 7 arrived 3.0 ms after its end_time"
    assert body.counters["joint_commands_expired_on_arrival"] == 1
    assert reports.of("expiry") == [f"{why}: the robot ends the stream (STATUS_EXPIRED)"]
    run(body, clock, 0.05)
    assert body.counters["joint_commands"] == 0 and body.last_key == 0  # never reached the controller


def test_joint_command_never_waits_for_the_physics_lock() -> None:
    """The RPC thread stamps and queues a command while the physics thread holds the body's lock."""
    clock = Clock()
    body = RobotBody(clock)
    held, release = threading.Event(), threading.Event()

    def physics_busy() -> None:
        with body.lock:
            held.set()
            release.wait(2.0)

    thread = threading.Thread(target=physics_busy)
    thread.start()
    try:
        assert held.wait(2.0)
        started = time.perf_counter()
        clock.ns += 5 * MS
        assert send(body, body.snapshot.q, clock.ns + 100 * MS, 1, gains=True) == ""
        assert time.perf_counter() - started < 0.05
        assert body._arriving[-1].arrival_ns == clock.ns  # stamped at receipt
    finally:
        release.set()
        thread.join()


@pytest.mark.parametrize("expiry", [ExpiryMode.STAND, ExpiryMode.END])
def test_when_the_command_in_force_expires(expiry: ExpiryMode) -> None:
    """stand (default): the robot stands on its own, joint control stays active; end: it ends."""
    body, clock, reports = standing_body(expiry)
    ended: list[tuple[str, str]] = []
    body.on_joint_end = lambda status, message: ended.append((status, message))
    q = body.snapshot.q.copy()
    q[ISAAC.index("fl_hx")] += 0.3
    send(body, q, clock.ns + 100 * MS, 1, gains=True)
    body.command("joint")
    run(body, clock, 0.09)
    assert body.behaviour is Behaviour.JOINT and not body.joint_lapsed
    run(body, clock, 0.02)  # end_time passed
    assert body.counters["joint_control_expiries"] == 1
    run(body, clock, 2.0)
    # Stood on its own, in place (it cannot step): level, at its height, still, holding its stand.
    now = body.snapshot
    assert np.max(np.abs(now.q - body.stand_pose)) < 0.1 and np.max(np.abs(now.dq)) < 0.05
    assert now.quat_wxyz[0] > 0.999 and now.position[2] == pytest.approx(body.kinematics.nominal_height, abs=0.03)
    if expiry is ExpiryMode.STAND:
        assert body.joint_lapsed and body.feedback(body.current_command) == ("STATUS_PROCESSING", "STATUS_ACTIVE")
        assert ended == [] and "(expiry=stand)" in reports.of("expiry")[0]
        send(body, q, clock.ns + 100 * MS, 2)
        run(body, clock, 0.05)
        assert not body.joint_lapsed and body.counters["joint_control_resumes"] == 1
    else:
        assert body.behaviour is Behaviour.STAND and body.standing
        assert ended and ended[0][0] == "STATUS_EXPIRED" and "end_time passed" in ended[0][1]
        assert body.feedback(body.current_command) == ("STATUS_COMMAND_TIMED_OUT", "STATUS_ERROR")
        send(body, q, clock.ns + 100 * MS, 2)
        run(body, clock, 0.05)
        assert body.behaviour is Behaviour.STAND  # a new activation is needed


def test_a_stall_keeps_every_state_sample_and_is_reported() -> None:
    """The physics thread, kept from stepping for 150 ms, catches up every step: the samples keep
    their 3 ms spacing (333 Hz) across the stall, and the stall is one report line."""
    reports = Reports()
    body = RobotBody(time.time_ns, report=reports)
    body.start()
    try:
        time.sleep(0.2)
        first = body.snapshot.seq
        with body.lock:
            time.sleep(0.15)
        time.sleep(0.15)
        snaps = [s for s in list(body.snapshots) if s.seq >= first]
    finally:
        body.stop()
    seqs = [s.seq for s in snaps]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # none dropped
    gaps_ms = np.diff([s.robot_ns for s in snaps]) * 1e-6
    assert set(np.round(gaps_ms, 3)) <= {2.0, 4.0}, gaps_ms  # on the 333 Hz schedule, no hole
    stalls = reports.of("stall")
    assert stalls and any(140 <= int(line.split()[3]) <= 400 for line in stalls), stalls
    assert "every state sample kept" in stalls[0] and body.counters["stalls"] == len(stalls)
    assert body.counters["dropped_steps"] == 0


def test_stand_posture_is_the_recorded_spot_stand_and_body_offsets_saturate() -> None:
    """The record (LaNMP, a real Spot standing under its own control): its joint angles put the front
    left sole where it measured it, (0.3207, 0.1730, -0.5149) m, within 2 mm on this model."""
    body = RobotBody(Clock())
    kin = body.kinematics
    np.testing.assert_allclose(kin.stand_q, [spot_stand_angles()[n] for n in ISAAC])
    sole = kin.nominal_feet[0] - np.array([0.0, 0.0, kin.foot_radius])
    np.testing.assert_allclose(sole, [0.3207, 0.1730, -0.5149], atol=0.002)
    assert kin.nominal_height == pytest.approx(0.517, abs=0.002)
    # A height offset moves only the body: the feet keep their x and y.
    q, reached = kin.stand_pose(BodyOffset(height=-0.1))
    assert reached == BodyOffset(height=-0.1)
    feet = kin.feet(q)
    np.testing.assert_allclose(feet[:, :2], kin.nominal_feet[:, :2], atol=1e-4)
    np.testing.assert_allclose(feet[:, 2], kin.nominal_feet[:, 2] + 0.1, atol=1e-4)
    # Too much: first the emulator's limits, then what the legs reach (scaled back, never refused).
    wild = BodyOffset(height=0.3, roll=0.3, pitch=0.35, yaw=0.3).saturated()
    assert wild.height == 0.1
    q, reached = kin.stand_pose(wild)
    assert 0.0 < reached.height <= 0.1 and reached.pitch <= 0.35
    assert np.all(q >= kin.lower - 1e-9) and np.all(q <= kin.upper + 1e-9)
    # The stand-up path lifts the body without sweeping the feet.
    path = kin.foot_path(body._sit_q, kin.stand_q)
    swept = np.array([kin.feet(p)[:, :2] for p in path])
    assert np.ptp(swept, axis=0).max() < 1e-3


def test_body_offset_reads_the_sdk_footprint_rotation() -> None:
    from bosdyn.geometry import EulerZXY

    q = EulerZXY(yaw=0.2, roll=-0.1, pitch=0.15).to_quaternion()
    offset = BodyOffset.from_quaternion(-0.05, q.w, q.x, q.y, q.z)
    got = (offset.height, offset.roll, offset.pitch, offset.yaw)
    assert got == pytest.approx((-0.05, -0.1, 0.15, 0.2))
    matrix = np.zeros(9)
    mujoco.mju_quat2Mat(matrix, np.array([q.w, q.x, q.y, q.z]))
    np.testing.assert_allclose(offset.rotation(), matrix.reshape(3, 3), atol=1e-12)


def test_standing_loads_are_steady_and_the_feet_touch() -> None:
    body, clock, _ = standing_body()
    run(body, clock, 1.0)
    a = body.snapshot
    run(body, clock, 0.5)
    b = body.snapshot
    assert np.max(np.abs(a.tau - b.tau)) < 0.3, b.tau - a.tau
    assert b.contacts == (True, True, True, True)
    knees = [ISAAC.index(f"{leg}_kn") for leg in ("fl", "fr", "hl", "hr")]
    assert np.all((b.tau[knees] > 8.0) & (b.tau[knees] < 35.0))
    np.testing.assert_allclose(b.feet_body[:, 2], -b.position[2], atol=0.005)  # soles on the floor


def test_a_fall_is_one_report_line_and_counted() -> None:
    """Under joint control the client folds the legs: the body drops below 0.25 m (the run report's
    fall), reported once; standing up again re-arms the check."""
    body, clock, reports = standing_body()
    folded = body._sit_q.copy()
    folded[[ISAAC.index(f"{leg}_kn") for leg in ("fl", "fr", "hl", "hr")]] = -2.7
    kp, kd = np.full(12, 60.0), np.full(12, 1.5)
    body.joint_command(folded[SDK_FROM_ISAAC], kp, kd, clock.ns + 3_000 * MS, 1)
    body.command("joint")
    run(body, clock, 2.0)
    assert body.counters["falls"] == 1 and len(reports.of("fall")) == 1, reports.of("fall")
    assert "Spot fell in joint_control: base 0." in reports.of("fall")[0]
