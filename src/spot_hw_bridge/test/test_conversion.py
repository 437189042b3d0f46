"""State -> contract and contract -> command conversions, by name, in the contract's frames (no robot)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from bosdyn.api import robot_state_pb2

from spot_hw_bridge.core.conversion import (
    SDK_ORDER,
    CommandMapper,
    Gains,
    StreamLayout,
    body_twist,
    joint_request,
    projected_gravity,
    sample_from_stream,
    timestamp_ns,
)
from spot_hw_bridge.core.errors import BridgeError, Credentials, Redactor
from spot_policy.core import contract
from spot_policy.core.loader import load_spec
from spot_policy.core.locate import locate_run

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "spot_policy_node" / "test"))
from policy_fixtures import make_run

YAW_90 = (0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4))  # x, y, z, w
ROLL_90 = (math.sin(math.pi / 4), 0.0, 0.0, math.cos(math.pi / 4))


def test_sdk_order_and_names_match_the_facts() -> None:
    assert SDK_ORDER[:3] == ("fl_hx", "fl_hy", "fl_kn") and SDK_ORDER[-1] == "hr_kn"
    # The index maps of SPOT.md are a check of the name-based mapping, not its implementation.
    assert contract.index_map(contract.SDK_JOINT_ORDER, contract.ISAAC_JOINT_ORDER) == [
        0,
        3,
        6,
        9,
        1,
        4,
        7,
        10,
        2,
        5,
        8,
        11,
    ]
    assert contract.sdk_name("fl_hx") == "fl.hx" and contract.from_sdk_name("hr.kn") == "hr_kn"


def test_body_twist_rotates_odom_velocity_into_the_body_frame() -> None:
    # Yawed 90 degrees left: moving along odom +y is moving forward; a yaw rate stays a yaw rate.
    lin, ang = body_twist(YAW_90, (0.0, 0.5, 0.0), (0.0, 0.0, 0.3))
    np.testing.assert_allclose(lin, [0.5, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(ang, [0.0, 0.0, 0.3], atol=1e-12)
    # Rolled 90 degrees about x: odom +z is the body's +y (R^T applied, not R).
    lin, _ = body_twist(ROLL_90, (0.0, 0.0, 1.0), (0.0, 0.0, 0.0))
    np.testing.assert_allclose(lin, [0.0, 1.0, 0.0], atol=1e-12)


def test_projected_gravity() -> None:
    np.testing.assert_allclose(projected_gravity((0, 0, 0, 1)), [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(projected_gravity(YAW_90), [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(projected_gravity(ROLL_90), [0, -1, 0], atol=1e-12)
    with pytest.raises(ValueError, match="quaternion"):
        projected_gravity((0, 0, 0, 0))


def _stream_message(order: list[str]) -> robot_state_pb2.RobotStateStreamResponse:
    """A state stream message whose joint i carries value 0.01 * (index of its name in SDK order)."""
    msg = robot_state_pb2.RobotStateStreamResponse()
    for name in order:
        joint = contract.canonical_joint_name(name)
        value = 0.01 * SDK_ORDER.index(joint) if joint else 9.0
        msg.joint_states.position.append(value)
        msg.joint_states.velocity.append(-value)
        msg.joint_states.load.append(2 * value)
    msg.joint_states.acquisition_timestamp.seconds, msg.joint_states.acquisition_timestamp.nanos = 12, 345
    kin = msg.kinematic_state
    r = kin.odom_tform_body.rotation
    r.x, r.y, r.z, r.w = YAW_90
    kin.odom_tform_body.position.z = 0.45
    kin.velocity_of_body_in_odom.linear.y = 0.5
    kin.velocity_of_body_in_odom.angular.z = 0.2
    packet = msg.inertial_state.packets.add()
    packet.acceleration_rt_odom_in_link_frame.x = 0.1
    msg.last_command.user_command_key = 7
    return msg


def test_stream_is_mapped_by_the_names_of_the_full_state() -> None:
    # A robot reporting its joints in another order, with an arm joint in the middle.
    order = [contract.sdk_name(j) for j in reversed(SDK_ORDER)]
    order.insert(5, "arm0.sh0")
    layout = StreamLayout(order)
    sample = sample_from_stream(_stream_message(order), layout)
    np.testing.assert_allclose(sample.q, 0.01 * np.arange(12))
    np.testing.assert_allclose(sample.dq, -0.01 * np.arange(12))
    np.testing.assert_allclose(sample.load, 0.02 * np.arange(12))
    assert sample.joint_names == SDK_ORDER
    assert sample.acquisition_robot_ns == 12_000_000_345 and sample.last_command_key == 7
    np.testing.assert_allclose(sample.lin_vel_body, [0.5, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(sample.ang_vel_body, [0.0, 0.0, 0.2], atol=1e-12)
    np.testing.assert_allclose(sample.lin_acc_body, [0.1, 0.0, 9.81], atol=1e-12)  # proper acceleration
    np.testing.assert_allclose(sample.projected_gravity, [0, 0, -1], atol=1e-12)
    assert sample.position[2] == pytest.approx(0.45)


def test_stream_layout_refuses_a_robot_without_spot_legs() -> None:
    with pytest.raises(ValueError, match=r"fl\.hx"):
        StreamLayout([contract.sdk_name(j) for j in SDK_ORDER[1:]])


def test_command_mapper_maps_any_convention_by_name_and_clips_to_limits() -> None:
    mapper = CommandMapper()
    isaac = list(contract.ISAAC_JOINT_ORDER)
    values = [0.1 * i for i in range(12)]
    targets = mapper.positions(isaac, values)
    for i, joint in enumerate(SDK_ORDER):
        lower, upper = contract.joint_limits(joint)
        assert targets[i] == pytest.approx(np.clip(values[isaac.index(joint)], lower, upper))
    urdf = [contract.urdf_name(j) for j in SDK_ORDER] + ["arm0.el0"]
    # URDF names map too; an extra (arm) joint is ignored; the knee's -1.0 is within its limits.
    assert mapper.positions(urdf, [-1.0] * 12 + [5.0])[2] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="missing joints fl_hx"):
        mapper.positions(isaac[1:], values[1:])
    with pytest.raises(ValueError, match="non-finite position for fl_hy"):
        mapper.positions(list(SDK_ORDER), [0.0, float("nan")] + [0.0] * 10)
    with pytest.raises(ValueError, match="given twice"):
        mapper.positions([*SDK_ORDER, "fl.hx"], [0.0] * 13)


def test_gains_come_from_the_policy_config_in_sdk_order(tmp_path: Path) -> None:
    spec = load_spec(locate_run(make_run(tmp_path)))
    gains = Gains.from_policy_spec(spec)
    assert gains.kp.tolist() == [60.0] * 12 and gains.kd.tolist() == [1.5] * 12
    expected = {"hx": {"l": 0.1, "r": -0.1}, "hy": {"f": 0.9, "h": 1.1}, "kn": -1.5}
    for joint, value in zip(SDK_ORDER, gains.default_pose, strict=True):
        leg, part = joint.split("_")
        want = expected[part] if part == "kn" else expected[part][leg[1] if part == "hx" else leg[0]]
        assert value == pytest.approx(want), joint


def test_joint_request_carries_targets_gains_and_a_robot_clock_end_time() -> None:
    gains = Gains(np.full(12, 60.0), np.full(12, 1.5), np.zeros(12), "test")
    targets = np.linspace(-0.5, 0.5, 12)
    first = joint_request(targets, 5_100_000_000, 1, gains, "me", 3_000_000_000)
    later = joint_request(targets, 5_200_000_000, 2, None, "me", 3_100_000_000)
    cmd = first.joint_command
    np.testing.assert_allclose(list(cmd.position), targets)
    assert list(cmd.velocity) == [0.0] * 12 and list(cmd.load) == [0.0] * 12
    assert list(cmd.gains.k_q_p) == [60.0] * 12 and list(cmd.gains.k_qd_p) == [1.5] * 12
    assert timestamp_ns(cmd.end_time) == 5_100_000_000 and cmd.user_command_key == 1
    assert cmd.extrapolation_duration.nanos == 5_000_000
    assert not later.joint_command.HasField("gains") and first.header.client_name == "me"


def test_credentials_and_redaction_never_show_the_secrets() -> None:
    creds = Credentials("op-Quokka-5521", "pw-Zebra-93817!")
    assert "Quokka" not in repr(creds) and "Zebra" not in str(creds) and "Zebra" not in f"{creds!r} {creds}"
    redactor = Redactor(creds.username, creds.password)
    assert redactor.redact("login op-Quokka-5521 / pw-Zebra-93817! failed") == "login <redacted> / <redacted> failed"
    with pytest.raises(BridgeError, match="BOSDYN_CLIENT_PASSWORD not set") as error:
        Credentials.from_env({"BOSDYN_CLIENT_USERNAME": "op-Quokka-5521"})
    assert "Quokka" not in str(error.value) and "fix: export" in str(error.value)
