"""The Spot API emulator through bosdyn-client, unmodified: login, TLS, time, state stream, joint control."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import bosdyn.client
import numpy as np
import pytest
from bosdyn.api import basic_command_pb2
from bosdyn.api.robot_command_pb2 import JointControlStreamResponse
from bosdyn.api.robot_state_pb2 import FootState
from bosdyn.client.auth import InvalidLoginError
from bosdyn.client.exceptions import RpcError, UnauthenticatedError
from bosdyn.client.frame_helpers import BODY_FRAME_NAME, ODOM_FRAME_NAME, VISION_FRAME_NAME, get_a_tform_b
from bosdyn.client.lease import LeaseClient, LeaseKeepAlive
from bosdyn.client.robot_command import (
    RobotCommandBuilder,
    RobotCommandClient,
    RobotCommandStreamingClient,
    blocking_stand,
)
from bosdyn.client.robot_id import RobotIdClient
from bosdyn.client.robot_state import RobotStateClient, RobotStateStreamingClient

from spot_hw_bridge.core.conversion import SDK_ORDER, Gains, joint_request, timestamp_ns
from spot_hw_bridge.emulator import SpotEmulator
from spot_hw_bridge.emulator.body import ISAAC, ROBOT_KD, ROBOT_KP, SDK_FROM_ISAAC, Behaviour
from spot_hw_bridge.emulator.posture import spot_stand_angles

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hw_fixtures import PASSWORD, USERNAME, running_emulator, wait_for

SKEW_S = 7.5
pytestmark = pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def emulator() -> Iterator[SpotEmulator]:
    with running_emulator(clock_skew_s=SKEW_S) as emulator:
        yield emulator


#: The SDKs this module's tests made: each robot it logs in keeps a token-refresh thread until stopped.
_SDKS: list = []


@pytest.fixture(autouse=True)
def _stop_client_threads() -> Iterator[None]:
    """Stop the token-refresh and time-sync threads of the robots a test logged in (else they outlive it)."""
    yield
    while _SDKS:
        _SDKS.pop().clear_robots()


def connect(emulator: SpotEmulator, password: str = PASSWORD, ca: Path | None = None):
    sdk = bosdyn.client.create_standard_sdk("emulator_test")
    _SDKS.append(sdk)
    sdk.register_service_client(RobotStateStreamingClient)
    sdk.register_service_client(RobotCommandStreamingClient)
    sdk.load_robot_cert(str(ca or emulator.ca_path))
    robot = sdk.create_robot("127.0.0.1")
    robot.update_secure_channel_port(emulator.port)
    robot.authenticate(USERNAME, password, timeout=5)
    return robot


def test_login_tls_and_tokens(emulator: SpotEmulator, tmp_path: Path) -> None:
    with pytest.raises(InvalidLoginError):
        connect(emulator, password="not the password")
    robot = connect(emulator)
    assert robot.ensure_client(RobotIdClient.default_service_name).get_id(timeout=5).species == "spot"
    # Every other authority the directory lists is covered by the certificate.
    assert {"robot-state-streaming", "robot-command-streaming", "license"} <= set(robot.sync_with_directory())
    # A call without a user token is refused.
    stranger = bosdyn.client.create_standard_sdk("stranger")
    _SDKS.append(stranger)
    stranger.load_robot_cert(str(emulator.ca_path))
    anonymous = stranger.create_robot("127.0.0.1")
    anonymous.update_secure_channel_port(emulator.port)
    anonymous.authorities_by_name["robot-state"] = "robot-state.spot.robot"
    anonymous.service_type_by_name["robot-state"] = RobotStateClient.service_type
    with pytest.raises(UnauthenticatedError):
        anonymous.ensure_client("robot-state").get_robot_state(timeout=5)
    # A client trusting another CA (here: Boston Dynamics' own robot CA) cannot connect.
    with pytest.raises(RpcError):
        bosdyn_ca = bosdyn.client.create_standard_sdk("bd_ca")
        _SDKS.append(bosdyn_ca)
        other = bosdyn_ca.create_robot("127.0.0.1")
        other.update_secure_channel_port(emulator.port)
        other.authenticate(USERNAME, PASSWORD, timeout=3)


def test_time_sync_and_the_state_stream_at_333_hz_on_the_robot_clock(emulator: SpotEmulator) -> None:
    robot = connect(emulator)
    robot.time_sync.wait_for_sync(timeout_sec=3)
    skew = robot.time_sync.get_robot_clock_skew()
    assert skew.seconds + skew.nanos * 1e-9 == pytest.approx(SKEW_S, abs=0.01)
    stream = robot.ensure_client(RobotStateStreamingClient.default_service_name).get_robot_state_stream()
    stamps, start, sampled0 = [], time.monotonic(), emulator.body.counters["state_snapshots"]
    for msg in stream:
        stamps.append(timestamp_ns(msg.joint_states.acquisition_timestamp))
        assert len(msg.joint_states.position) == 12
        if time.monotonic() - start > 1.0:
            break
    stream.cancel()
    # The robot samples at 333 Hz (every 1.5 physics steps of 2 ms); a reader that falls behind on a
    # loaded machine gets the newest sample and skips the ones in between.
    sampled = (emulator.body.counters["state_snapshots"] - sampled0) / (time.monotonic() - start)
    # ~333 Hz nominal; a loaded 2-core machine (CI runs several processes) was measured at 282 Hz.
    assert 250 < sampled < 360, sampled
    rate = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) * 1e-9)
    assert 200 < rate < 360, rate
    gaps_ms = np.diff(stamps) * 1e-6
    assert gaps_ms.min() > 0 and 1.9 < np.median(gaps_ms) < 4.1, gaps_ms  # each sample once, in order, 2-4 ms apart
    assert abs(stamps[-1] * 1e-9 - (time.time() + SKEW_S)) < 0.2  # robot clock, not ours
    names = [
        j.name
        for j in robot.ensure_client(RobotStateClient.default_service_name)
        .get_robot_state()
        .kinematic_state.joint_states
    ]
    assert names[:3] == ["fl.hx", "fl.hy", "fl.kn"]


def _skew_ns(robot) -> int:
    skew = robot.time_sync.get_robot_clock_skew()
    return skew.seconds * 1_000_000_000 + skew.nanos


def _commands(targets, skew_ns: int, ttl_s: float, seconds: float, activate=None, gains: bool = True):
    """JointControlStreamRequests at ~333 Hz for ``seconds``: ``targets(key)`` (SDK order), robot-clock
    end_time now + ``ttl_s``, the robot's own gains in the first; ``activate()`` after the first (BD's order)."""
    end = time.monotonic() + seconds
    key = 0
    while time.monotonic() < end:
        key += 1
        now = time.time_ns()
        kp, kd = ROBOT_KP[SDK_FROM_ISAAC], ROBOT_KD[SDK_FROM_ISAAC]
        g = Gains(kp, kd, np.zeros(12), "test") if gains and key == 1 else None
        yield joint_request(targets(key), now + skew_ns + round(ttl_s * 1e9), key, g, "test", now)
        if key == 1 and activate is not None:
            activate()
        time.sleep(0.003)


def test_joint_commands_drive_the_physics_a_late_one_ends_the_stream_and_a_lapse_stands(
    emulator: SpotEmulator,
) -> None:
    robot = connect(emulator)
    robot.time_sync.wait_for_sync(timeout_sec=3)
    lease_client = robot.ensure_client(LeaseClient.default_service_name)
    with LeaseKeepAlive(lease_client, must_acquire=True, return_at_exit=True):
        robot.power_on(timeout_sec=5, update_frequency=10)
        command_client = robot.ensure_client(RobotCommandClient.default_service_name)
        blocking_stand(command_client, timeout_sec=5, update_frequency=10)
        body = emulator.body
        assert body.standing
        stand = body.snapshot.q[SDK_FROM_ISAAC].copy()
        skew_ns = _skew_ns(robot)
        target = stand.copy()
        target[SDK_ORDER.index("fl_hx")] += 0.3  # swing one hip out
        streaming = robot.ensure_client(RobotCommandStreamingClient.default_service_name)
        expired0, lines0 = body.counters["joint_commands_expired_on_arrival"], len(emulator.log_lines)
        activate = lambda: command_client.robot_command(RobotCommandBuilder.joint_command())  # noqa: E731

        # A command already past its end_time on arrival ends the stream with STATUS_EXPIRED (what that
        # status means): the first one, at once; the hip does not move.
        response = streaming.send_joint_control_commands(_commands(lambda k: target, skew_ns, -0.05, 0.3, activate))
        assert response.status == JointControlStreamResponse.STATUS_EXPIRED, response
        assert "after its end_time" in response.message
        assert body.counters["joint_commands_expired_on_arrival"] - expired0 == 1
        assert abs(body.snapshot.q[SDK_FROM_ISAAC][0] - stand[0]) < 0.05
        new_lines = list(emulator.log_lines)[lines0:]
        assert any("expiry: joint command 1 arrived" in line for line in new_lines), new_lines
        assert any("stream: joint control stream ended by the robot after 1 messages, STATUS_EXPIRED" in line
                   for line in new_lines), new_lines  # fmt: skip

        # Live commands drive the hip to its target with the gains sent; the client's half-close is STATUS_OK.
        response = streaming.send_joint_control_commands(_commands(lambda k: target, skew_ns, 0.1, 0.6, activate))
        assert response.status == JointControlStreamResponse.STATUS_OK, response
        assert body.snapshot.q[SDK_FROM_ISAAC][0] == pytest.approx(target[0], abs=0.05)
        # With no newer command the last one lapses: the robot stands on its own, joint control stays
        # active (expiry=stand) ...
        assert wait_for(lambda: body.joint_lapsed, timeout=1.0)
        # (in place: it cannot step, so the swung-out foot stays out and the body levels over the feet)
        assert wait_for(lambda: np.max(np.abs(body.snapshot.q - body.stand_pose)) < 0.1, timeout=3.0)
        feedback = command_client.robot_command_feedback(body.current_command).feedback.full_body_feedback
        assert feedback.joint_feedback.status == basic_command_pb2.JointCommand.Feedback.STATUS_ACTIVE
        # ... and the next command in time resumes it, on a new stream, with no new activation.
        resumes = body.counters["joint_control_resumes"]
        response = streaming.send_joint_control_commands(_commands(lambda k: target, skew_ns, 0.1, 0.6))
        assert response.status == JointControlStreamResponse.STATUS_OK, response
        assert body.counters["joint_control_resumes"] == resumes + 1
        assert body.snapshot.q[SDK_FROM_ISAAC][0] == pytest.approx(target[0], abs=0.05)
        assert any("joint control resumed after" in line for line in emulator.log_lines)
    assert emulator.lease_owner == ""


def test_expiry_end_option_ends_joint_control_and_the_stream() -> None:
    """--on-expiry end: the lapse ends joint control; the open stream is answered STATUS_EXPIRED."""
    with running_emulator(expiry="end") as emulator:
        robot = connect(emulator)
        robot.time_sync.wait_for_sync(timeout_sec=3)
        with LeaseKeepAlive(robot.ensure_client(LeaseClient.default_service_name), must_acquire=True):
            robot.power_on(timeout_sec=5, update_frequency=10)
            command_client = robot.ensure_client(RobotCommandClient.default_service_name)
            blocking_stand(command_client, timeout_sec=5, update_frequency=10)
            body = emulator.body
            stand = body.snapshot.q[SDK_FROM_ISAAC].copy()
            skew_ns = _skew_ns(robot)
            activate = lambda: command_client.robot_command(RobotCommandBuilder.joint_command())  # noqa: E731

            def gap_after_half_a_second():
                yield from _commands(lambda k: stand, skew_ns, 0.05, 0.5, activate)
                time.sleep(0.2)  # the last command's end_time passes
                yield from _commands(lambda k: stand, skew_ns, 0.05, 0.1, gains=False)

            response = robot.ensure_client(
                RobotCommandStreamingClient.default_service_name
            ).send_joint_control_commands(gap_after_half_a_second())
            assert response.status == JointControlStreamResponse.STATUS_EXPIRED, response
            assert "end_time passed" in response.message
            assert body.behaviour is Behaviour.STAND and not body.joint_lapsed
            feedback = command_client.robot_command_feedback(body.current_command).feedback.full_body_feedback
            assert feedback.status == basic_command_pb2.RobotCommandFeedbackStatus.STATUS_COMMAND_TIMED_OUT
        assert "expiry=end" in emulator.summary()


def test_stand_in_spots_posture_at_the_commanded_height_with_steady_loads_contacts_and_frames() -> None:
    with running_emulator() as emulator:
        check_stand(emulator)


def check_stand(emulator: SpotEmulator) -> None:
    robot = connect(emulator)
    robot.time_sync.wait_for_sync(timeout_sec=3)
    state_client = robot.ensure_client(RobotStateClient.default_service_name)
    with LeaseKeepAlive(robot.ensure_client(LeaseClient.default_service_name), must_acquire=True):
        robot.power_on(timeout_sec=5, update_frequency=10)
        command_client = robot.ensure_client(RobotCommandClient.default_service_name)
        blocking_stand(command_client, timeout_sec=5, update_frequency=10)
        body = emulator.body
        time.sleep(1.0)
        first = body.snapshot
        time.sleep(0.5)
        later = body.snapshot
        # Spot's own stand (a real robot's record), sagging a little under the stiff SDK gains, at rest.
        spot = np.array([spot_stand_angles()[n] for n in ISAAC])
        assert np.max(np.abs(later.q - spot)) < 0.12, later.q
        assert later.position[2] == pytest.approx(body.kinematics.nominal_height, abs=0.03)
        knees = [ISAAC.index(f"{leg}_kn") for leg in ("fl", "fr", "hl", "hr")]
        assert np.all((later.tau[knees] > 8.0) & (later.tau[knees] < 35.0)), later.tau  # N*m, extensors
        # Standing still: steady loads (1 N*m is 0.017 rad of a hand-over target at kp 60).
        assert np.max(np.abs(later.tau - first.tau)) < 1.0, later.tau - first.tau
        assert later.contacts == (True, True, True, True)

        # The full state: foot_state and the transforms snapshot agree with the body.
        state = state_client.get_robot_state()
        snapshot = state.kinematic_state.transforms_snapshot
        odom_body = get_a_tform_b(snapshot, ODOM_FRAME_NAME, BODY_FRAME_NAME)
        now = body.snapshot
        assert odom_body.z == pytest.approx(now.position[2], abs=0.005)
        flat = get_a_tform_b(snapshot, ODOM_FRAME_NAME, "flat_body")
        assert flat.z == pytest.approx(odom_body.z, abs=1e-6) and abs(flat.rot.to_roll()) < 1e-9
        centre = get_a_tform_b(snapshot, ODOM_FRAME_NAME, "feet_center")
        assert centre.z == pytest.approx(0.0, abs=0.01)  # the soles on the floor
        assert get_a_tform_b(snapshot, "gpe", ODOM_FRAME_NAME) is not None
        assert get_a_tform_b(snapshot, VISION_FRAME_NAME, BODY_FRAME_NAME).z == pytest.approx(odom_body.z, abs=1e-6)
        feet = state.foot_state
        assert [f.contact for f in feet] == [FootState.CONTACT_MADE] * 4
        assert feet[0].foot_position_rt_body.x > 0.2 and feet[0].foot_position_rt_body.y > 0.1
        assert feet[0].foot_position_rt_body.z == pytest.approx(-odom_body.z, abs=0.01)
        stream = robot.ensure_client(RobotStateStreamingClient.default_service_name).get_robot_state_stream()
        msg = next(iter(stream))
        stream.cancel()
        assert list(msg.contact_states) == [FootState.CONTACT_MADE] * 4

        # The stand command's mobility_params: body 0.1 m lower, then back at the nominal height.
        blocking_stand(command_client, 10, 10, RobotCommandBuilder.mobility_params(body_height=-0.1))
        assert wait_for(lambda: body.standing, 3.0)
        time.sleep(0.3)
        assert body.snapshot.position[2] == pytest.approx(later.position[2] - 0.1, abs=0.015)
        blocking_stand(command_client, 10, 10, RobotCommandBuilder.mobility_params(body_height=0.0))
        assert wait_for(lambda: body.standing, 3.0)
        time.sleep(0.3)
        assert body.snapshot.position[2] == pytest.approx(later.position[2], abs=0.015)
        robot.power_off(cut_immediately=False, timeout_sec=10)


def test_the_state_stream_sends_every_sample_across_an_emulator_stall(emulator: SpotEmulator) -> None:
    """The physics thread kept from stepping for 150 ms (as a loaded machine does): the client still
    gets every 333 Hz sample, in order, on the robot's time axis, and the console says so."""
    robot = connect(emulator)
    stream = robot.ensure_client(RobotStateStreamingClient.default_service_name).get_robot_state_stream()
    stamps, stalls0 = [], emulator.event_counts.get("stall", 0)
    started, stalled = time.monotonic(), False
    for msg in stream:
        stamps.append(timestamp_ns(msg.joint_states.acquisition_timestamp))
        if not stalled and time.monotonic() - started > 0.2:
            stalled = True
            with emulator.body.lock:
                time.sleep(0.15)
        if time.monotonic() - started > 0.6:
            break
    stream.cancel()
    gaps_ms = np.diff(stamps[10:]) * 1e-6  # (the very first sample may predate the physics thread)
    assert gaps_ms.max() < 4.5 and gaps_ms.min() > 1.5, gaps_ms.max()  # every sample, none skipped
    assert emulator.event_counts.get("stall", 0) > stalls0
    assert any("physics caught up" in line for line in emulator.log_lines)


def test_the_console_has_one_line_per_event_and_a_summary() -> None:
    lines: list[str] = []
    with running_emulator(on_log=lines.append) as emulator:
        robot = connect(emulator)
        robot.time_sync.wait_for_sync(timeout_sec=3)
        lease_client = robot.ensure_client(LeaseClient.default_service_name)
        with LeaseKeepAlive(lease_client, must_acquire=True, return_at_exit=True):
            robot.power_on(timeout_sec=5, update_frequency=10)
            blocking_stand(robot.ensure_client(RobotCommandClient.default_service_name), 5, 10)
            robot.power_off(cut_immediately=False, timeout_sec=10)
        summary = emulator.summary()
    kinds = [line.split("] ", 1)[1].split(":", 1)[0] for line in lines]
    assert kinds.count("lease") == 2 and kinds.count("power") == 4, lines  # granted, returned; on, on, off, off
    assert all(line.startswith("[emulator ") and "\n" not in line for line in lines)
    assert "2 lease changes, 4 power changes" in summary and "0 expiries" in summary, summary


def test_faults_refuse_login_and_joint_control(emulator: SpotEmulator) -> None:
    emulator.inject("wrong_password")
    try:
        with pytest.raises(InvalidLoginError):
            connect(emulator)
    finally:
        emulator.clear("wrong_password")
    robot = connect(emulator)
    emulator.inject("no_licence")
    try:
        from bosdyn.client.license import LicenseClient

        features = robot.ensure_client(LicenseClient.default_service_name).get_license_info().licensed_features
        assert "joint_control" not in features
    finally:
        emulator.clear("no_licence")
    assert np.isfinite(emulator.body.snapshot.q).all()
