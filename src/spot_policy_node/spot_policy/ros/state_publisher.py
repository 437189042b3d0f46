"""The bridge side of the topic contract: ``imu/data``, ``odom`` and ``joint_states`` with one stamp.

Every bridge (the simulator's, the robot's) publishes exactly these messages and reads
``joint_command`` the same way, so both live here. Messages go out pre-serialized and come in raw
(:mod:`spot_policy.ros.cdr`): rclpy's message conversion costs more than the rest of a bridge's step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
from builtin_interfaces.msg import Time
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Imu, JointState

from spot_policy.core import contract
from spot_policy.ros import cdr, qos_events
from spot_policy.ros.hot_loop import HotInputs
from spot_policy.ros.polling import PolledGroup, take_raw

T = TypeVar("T")


def to_time(ns: int) -> Time:
    """An exact builtin_interfaces/Time from integer nanoseconds (no float rounding)."""
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class StatePublisher:
    """Publishes one state instant: imu and odom first, joint_states last (an input-triggered policy
    node steps on joint_states once that instant's imu and odom are in)."""

    def __init__(self, node: Node, joint_names: Sequence[str]) -> None:
        warn = node.get_logger().warning

        def publisher(msg_type: type, topic: str):
            events = qos_events.contract_publisher(topic, warn)
            return node.create_publisher(msg_type, topic, qos_profile_sensor_data, event_callbacks=events)

        self.imu_pub = publisher(Imu, contract.TOPIC_IMU)
        self.odom_pub = publisher(Odometry, contract.TOPIC_ODOM)
        self.joint_states_pub = publisher(JointState, contract.TOPIC_JOINT_STATES)
        self._imu = cdr.ImuEncoder(contract.FRAME_BASE)
        self._odom = cdr.OdometryEncoder(contract.FRAME_ODOM, contract.FRAME_BASE)
        self._joints = cdr.JointStateEncoder([str(n) for n in joint_names])
        self.published = 0

    def publish(
        self,
        stamp_ns: int,
        quat_xyzw: Sequence[float],
        ang_vel_body: Sequence[float],
        lin_acc_body: Sequence[float],
        position: Sequence[float],
        lin_vel_body: Sequence[float],
        q: np.ndarray,
        dq: np.ndarray,
        effort: np.ndarray,
    ) -> None:
        """Body-frame rates and twist, odom-frame pose, joints in the order given at construction."""
        self.imu_pub.publish(self._imu(stamp_ns, quat_xyzw, ang_vel_body, lin_acc_body))
        self.odom_pub.publish(self._odom(stamp_ns, position, quat_xyzw, lin_vel_body, ang_vel_body))
        self.joint_states_pub.publish(self._joints(stamp_ns, q, dq, effort))
        self.published += 1


def plain_cdr_fallback(decode: Callable[[bytes], T], msg_type: type) -> Callable[[bytes], T]:
    """``decode`` (a :mod:`spot_policy.ros.cdr` reader), and for a payload in another encoding (a
    middleware's XCDR2) the same message re-serialized as plain CDR by rclpy first."""

    def read(data: bytes) -> T:
        try:
            return decode(data)
        except cdr.UnsupportedEncoding:
            return decode(serialize_message(deserialize_message(data, msg_type)))

    return read


#: A bridge's joint_command subscription: reliable like the policy node's publisher, depth 10 so a
#: lock-stepped bridge never drops one.
JOINT_COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def subscribe_joint_command(
    node: Node,
    on_command: Callable[[tuple[str, ...], np.ndarray], None],
    hot: bool = False,
    qos: QoSProfile = JOINT_COMMAND_QOS,
) -> HotInputs:
    """The bridge's ``joint_command`` input, read raw (:mod:`spot_policy.ros.cdr`): names and positions.

    ``hot``: the executor never waits on it; the returned :class:`~spot_policy.ros.hot_loop.HotInputs`
    is what the node's ``hot_inputs()`` offers (a lock-stepped bridge waits on its command itself).
    """
    read = plain_cdr_fallback(cdr.JointStateDecoder(), JointState)

    def on_raw(data: bytes) -> None:
        view = read(data)
        on_command(view.names, view.position)

    events = qos_events.contract_subscription(contract.TOPIC_JOINT_COMMAND, node.get_logger().warning)
    subscription = node.create_subscription(
        JointState,
        contract.TOPIC_JOINT_COMMAND,
        on_raw,
        qos,
        raw=True,
        event_callbacks=events,
        callback_group=PolledGroup() if hot else None,
    )

    def take_all() -> None:
        while (taken := take_raw(subscription)) is not None:
            on_raw(taken[0])

    return HotInputs([subscription], take_all)
