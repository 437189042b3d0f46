"""spot_policy.ros.cdr against rclpy's own serializer: every layout, both byte orders, odd string lengths."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from nav_msgs.msg import Odometry
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Imu, JointState

from spot_policy.ros import cdr

RNG = np.random.default_rng(7)
FRAMES = ["", "a", "ab", "abc", "body", "odom_frame_x"]  # every padding remainder


def joint_state(frame: str, names: list[str], n_vel: int | None = None) -> JointState:
    msg = JointState()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1234, 567_890_123
    msg.header.frame_id = frame
    msg.name = names
    msg.position = RNG.normal(size=len(names)).tolist()
    msg.velocity = RNG.normal(size=len(names) if n_vel is None else n_vel).tolist()
    msg.effort = RNG.normal(size=len(names)).tolist()
    return msg


@pytest.mark.parametrize("frame", FRAMES)
def test_joint_state_decodes_as_rclpy_does(frame: str) -> None:
    decode = cdr.JointStateDecoder()
    for names in (["fl_hx", "fl_hy", "fl_kn"], ["a", "bb", "ccc", "dddd", "eeeee"], ["front_left_hip_x"] * 12):
        msg = joint_state(frame, names)
        view = decode(serialize_message(msg))
        assert view.stamp_ns == 1234 * 1_000_000_000 + 567_890_123
        assert view.names == tuple(names)
        np.testing.assert_array_equal(view.position, msg.position)
        np.testing.assert_array_equal(view.velocity, msg.velocity)
        np.testing.assert_array_equal(view.effort, msg.effort)


def test_joint_state_empty_arrays_and_reused_names() -> None:
    decode = cdr.JointStateDecoder()
    names = ["abc", "def"]  # 3 chars + NUL: no padding inside the list (rclpy leaves padding bytes unset)
    msg = joint_state("x", names, n_vel=0)
    msg.effort = []
    first = decode(serialize_message(msg))
    assert first.velocity.size == 0 and first.effort.size == 0
    np.testing.assert_array_equal(first.position, msg.position)
    second = decode(serialize_message(joint_state("x", names)))
    assert second.names is first.names  # same bytes: the decoded tuple is reused


@pytest.mark.parametrize("frame", FRAMES)
def test_imu_decodes_as_rclpy_does(frame: str) -> None:
    msg = Imu()
    msg.header.frame_id = frame
    msg.header.stamp.sec, msg.header.stamp.nanosec = 5, 6
    msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = RNG.normal(size=4).tolist()
    msg.orientation_covariance = RNG.normal(size=9).tolist()
    msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = RNG.normal(size=3).tolist()
    msg.linear_acceleration.z = 9.81
    stamp, quat, gyro = cdr.decode_imu(serialize_message(msg))
    o, w = msg.orientation, msg.angular_velocity
    assert stamp == 5_000_000_006
    assert quat == (o.x, o.y, o.z, o.w) and gyro == (w.x, w.y, w.z)


@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("child", FRAMES)
def test_odometry_decodes_as_rclpy_does(frame: str, child: str) -> None:
    msg = Odometry()
    msg.header.frame_id, msg.child_frame_id = frame, child
    msg.header.stamp.sec = 9
    msg.pose.pose.position.x = 3.0
    msg.pose.covariance = RNG.normal(size=36).tolist()
    v = msg.twist.twist.linear
    v.x, v.y, v.z = RNG.normal(size=3).tolist()
    msg.twist.twist.angular.z = 4.0
    stamp, linear = cdr.decode_odometry_twist(serialize_message(msg))
    assert stamp == 9_000_000_000 and linear == (v.x, v.y, v.z)


def test_big_endian_payloads_decode() -> None:
    """DDS lets a writer pick its byte order; built by hand here (rclpy writes little endian)."""
    payload = b"\x00\x00\x00\x00" + struct.pack(">iII", 2, 3, 2) + b"f\x00"
    payload += b"\x00\x00" + struct.pack(">I", 1) + struct.pack(">I", 3) + b"xy\x00"
    payload += b"\x00" + struct.pack(">I", 1) + struct.pack(">d", 1.5)  # at offset 28; doubles align at 32
    payload += struct.pack(">I", 1) + b"\x00" * 4 + struct.pack(">d", -2.0) + struct.pack(">I", 0)
    view = cdr.JointStateDecoder()(payload)
    assert view.stamp_ns == 2_000_000_003 and view.names == ("xy",)
    assert view.position.tolist() == [1.5] and view.velocity.tolist() == [-2.0] and view.effort.size == 0


def test_other_encodings_are_refused_for_the_slow_path() -> None:
    payload = bytearray(serialize_message(Imu()))
    payload[1] = 0x07  # XCDR2 little endian
    with pytest.raises(cdr.UnsupportedEncoding, match="0007"):
        cdr.decode_imu(bytes(payload))


@pytest.mark.parametrize("frame", FRAMES)
def test_joint_state_encoder_round_trips_through_rclpy(frame: str) -> None:
    names = ["fl_hx", "fl_hy", "fl_kn", "front_right_hip_x", "a"]
    encode = cdr.JointStateEncoder(names, frame)
    for stamp_ns in (0, 1_700_000_000_123_456_789, 42):
        positions = RNG.normal(size=len(names))
        msg = deserialize_message(encode(stamp_ns, positions), JointState)
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == divmod(stamp_ns, 1_000_000_000)
        assert msg.header.frame_id == frame and list(msg.name) == names
        np.testing.assert_array_equal(msg.position, positions)
        assert list(msg.velocity) == [0.0] * len(names) and list(msg.effort) == [0.0] * len(names)


def test_joint_state_encoder_writes_velocity_and_effort() -> None:
    encode = cdr.JointStateEncoder(["a", "bb", "ccc"], "base")
    values = RNG.normal(size=(3, 3))
    msg = deserialize_message(encode(7, *values), JointState)
    for field, expected in zip((msg.position, msg.velocity, msg.effort), values, strict=True):
        np.testing.assert_array_equal(field, expected)


@pytest.mark.parametrize("frame", FRAMES)
def test_imu_encoder_round_trips_through_rclpy(frame: str) -> None:
    encode = cdr.ImuEncoder(frame)
    quat, gyro, acc = RNG.normal(size=4), RNG.normal(size=3), RNG.normal(size=3)
    msg = deserialize_message(encode(3_000_000_004, quat, gyro, acc), Imu)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (3, 4, frame)
    o, w, a = msg.orientation, msg.angular_velocity, msg.linear_acceleration
    assert [o.x, o.y, o.z, o.w] == quat.tolist() and [w.x, w.y, w.z] == gyro.tolist()
    assert [a.x, a.y, a.z] == acc.tolist()
    assert not any(msg.orientation_covariance) and not any(msg.linear_acceleration_covariance)


@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("child", FRAMES[::2])
def test_odometry_encoder_round_trips_through_rclpy(frame: str, child: str) -> None:
    encode = cdr.OdometryEncoder(frame, child)
    pos, quat, lin, ang = RNG.normal(size=3), RNG.normal(size=4), RNG.normal(size=3), RNG.normal(size=3)
    msg = deserialize_message(encode(12, pos, quat, lin, ang), Odometry)
    assert (msg.header.frame_id, msg.child_frame_id, msg.header.stamp.nanosec) == (frame, child, 12)
    p, o = msg.pose.pose.position, msg.pose.pose.orientation
    v, w = msg.twist.twist.linear, msg.twist.twist.angular
    assert [p.x, p.y, p.z] == pos.tolist() and [o.x, o.y, o.z, o.w] == quat.tolist()
    assert [v.x, v.y, v.z] == lin.tolist() and [w.x, w.y, w.z] == ang.tolist()
    assert cdr.decode_odometry_twist(encode(12, pos, quat, lin, ang)) == (12, tuple(lin))


def test_clock_encodes() -> None:
    from rosgraph_msgs.msg import Clock

    msg = deserialize_message(cdr.encode_clock(5_000_000_123), Clock)
    assert (msg.clock.sec, msg.clock.nanosec) == (5, 123)


def test_clock_decodes_as_rclpy_does() -> None:
    from rosgraph_msgs.msg import Clock

    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = 7, 999_999_999
    assert cdr.decode_clock(serialize_message(msg)) == 7_999_999_999
    big_endian = b"\x00\x00\x00\x00" + struct.pack(">iI", 3, 5)
    assert cdr.decode_clock(big_endian) == 3_000_000_005


def test_other_encodings_are_read_after_rclpy_re_serializes_them() -> None:
    """The fallback path of the nodes' readers (a real XCDR2 payload cannot be made here: the
    decoder below refuses the first payload the way spot_policy.ros.cdr refuses XCDR2)."""
    from spot_policy.ros.state_publisher import plain_cdr_fallback

    seen: list[bytes] = []

    def picky(data: bytes):
        seen.append(data)
        if len(seen) == 1:
            raise cdr.UnsupportedEncoding("CDR encapsulation 0007 is not plain CDR")
        return cdr.decode_odometry_twist(data)

    msg = Odometry()
    msg.header.stamp.sec = 4
    msg.twist.twist.linear.x, msg.twist.twist.linear.y = 0.5, -0.25
    assert plain_cdr_fallback(picky, Odometry)(serialize_message(msg)) == (4_000_000_000, (0.5, -0.25, 0.0))
    assert len(seen) == 2
