"""The bridge side of the topic contract: ``imu/data``, ``odom`` and ``joint_states`` with one stamp,
and what ROS tools need to show the robot: ``robot_description``, ``/tf`` and ``/tf_static``.

Every bridge (the simulator's, the robot's) publishes exactly these messages and reads
``joint_command`` the same way, so both live here. Messages go out pre-serialized and come in raw
(:mod:`spot_policy.ros.cdr`): rclpy's message conversion costs more than the rest of a bridge's step.

Frames: ``/tf`` carries ``odom -> body`` (the odometry pose) and each leg joint's transform, from
the joint states by :mod:`spot_policy.core.kinematics` over the URDF (what robot_state_publisher
would publish from the same ``robot_description``); ``/tf_static`` the URDF's fixed frames
(``base_link``, ``imu``, the feet), once, transient local.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
from builtin_interfaces.msg import Time
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import String

from spot_policy.core import contract
from spot_policy.core.kinematics import KinematicTree
from spot_policy.ros import cdr, qos_events
from spot_policy.ros.hot_loop import HotInputs
from spot_policy.ros.input_guard import InputGuard
from spot_policy.ros.polling import PolledGroup, take_raw

T = TypeVar("T")


def to_time(ns: int) -> Time:
    """An exact builtin_interfaces/Time from integer nanoseconds (no float rounding)."""
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


#: ``robot_description`` and ``/tf_static``: latched, as robot_state_publisher offers them.
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: ``/tf``: tf2's broadcaster QoS (reliable, depth 100).
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
#: ``/tf`` goes out at most this often (stamp time): a robot streams state at ~333 Hz, a viewer
#: needs far less. Lockstep (one state per 20 ms control period) gets every state.
TF_RATE_HZ = 100.0


def tf_message_type() -> type | None:
    """``tf2_msgs/TFMessage``, or None where tf2_msgs is not installed (no PyPI wheel: scripts/setup
    builds it into the .venv from its definition; a ROS installation has it)."""
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        return None
    return TFMessage


class FramePublisher:
    """``robot_description`` (once, latched), ``/tf_static`` (once, latched) and ``/tf`` per state."""

    def __init__(self, node: Node, joint_names: Sequence[str], robot_description: str, rate_hz: float) -> None:
        self.tree = KinematicTree.from_urdf(robot_description)
        self.description_pub = node.create_publisher(String, contract.TOPIC_ROBOT_DESCRIPTION, LATCHED_QOS)
        self.description_pub.publish(String(data=robot_description))
        order = [contract.canonical_joint_name(str(n)) or str(n) for n in joint_names]
        self._from_state = np.array(contract.index_map(order, self.tree.moving_names), dtype=np.intp)
        self._period_ns = int(1e9 / rate_hz) if rate_hz > 0 else 0
        self._last_ns: int | None = None
        self.published = 0
        tf_type = tf_message_type()
        self.tf_pub = self.static_pub = None
        if tf_type is None:
            node.get_logger().warning(
                "tf2_msgs is not installed: no /tf or /tf_static (robot_description is published); "
                "fix: run scripts/setup (it builds tf2_msgs into .venv) or source a ROS installation"
            )
            return
        moving = [(contract.FRAME_ODOM, contract.FRAME_BODY), *((j.parent, j.child) for j in self.tree.moving)]
        self._tf = cdr.TFMessageEncoder(moving)
        self._translations = np.zeros((len(moving), 3))
        self._rotations = np.zeros((len(moving), 4))
        self.tf_pub = node.create_publisher(tf_type, contract.TOPIC_TF, TF_QOS)
        self.static_pub = node.create_publisher(tf_type, contract.TOPIC_TF_STATIC, LATCHED_QOS)
        fixed = self.tree.fixed
        static = cdr.TFMessageEncoder([(j.parent, j.child) for j in fixed])
        self.static_pub.publish(static(0, [j.origin.translation for j in fixed], [j.origin.rotation for j in fixed]))

    def publish(self, stamp_ns: int, position: Sequence[float], quat_xyzw: Sequence[float], q: np.ndarray) -> None:
        """``odom -> body`` at ``position``/``quat_xyzw`` and the legs at ``q`` (the state's joint order).
        Skipped within the rate limit (a state at the same stamp, e.g. after a reset, is not), and for
        a state with a non-finite value (never published)."""
        if self.tf_pub is None:
            return
        if self._last_ns is not None and 0 < stamp_ns - self._last_ns < self._period_ns:
            return
        joints = np.asarray(q, dtype=np.float64)[self._from_state]
        translations, rotations = self._translations, self._rotations
        translations[0], rotations[0] = position, quat_xyzw
        translations[1:], rotations[1:] = self.tree.joint_transforms(joints)
        if not (np.isfinite(translations).all() and np.isfinite(rotations).all()):
            return
        self._last_ns = stamp_ns
        self.tf_pub.publish(self._tf(stamp_ns, translations, rotations))
        self.published += 1


#: A lock-stepped simulator's state QoS: reliable and transient-local with a deep history, so a
#: recorder that reads it so (the recorder's ``lockstep`` parameter) loses nothing, neither when
#: starved of CPU nor what was published before it matched (lockstep has no real-time budget to
#: protect). Sensor-data (best-effort, volatile) readers such as the policy node match it as well.
LOCKSTEP_STATE_QOS = QoSProfile(
    depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


class StatePublisher:
    """Publishes one state instant: imu and odom first, joint_states last (an input-triggered policy
    node steps on joint_states once that instant's imu and odom are in); then ``/tf``.

    ``robot_description`` (a URDF whose moving joints are ``joint_names``): also publish it, and the
    frames (:class:`FramePublisher`).
    """

    def __init__(
        self,
        node: Node,
        joint_names: Sequence[str],
        robot_description: str | None = None,
        tf_rate_hz: float = TF_RATE_HZ,
        qos: QoSProfile = qos_profile_sensor_data,
    ) -> None:
        warn = node.get_logger().warning

        def publisher(msg_type: type, topic: str):
            events = qos_events.contract_publisher(topic, warn)
            return node.create_publisher(msg_type, topic, qos, event_callbacks=events)

        self.imu_pub = publisher(Imu, contract.TOPIC_IMU)
        self.odom_pub = publisher(Odometry, contract.TOPIC_ODOM)
        self.joint_states_pub = publisher(JointState, contract.TOPIC_JOINT_STATES)
        self._imu = cdr.ImuEncoder(contract.FRAME_BASE)
        self._odom = cdr.OdometryEncoder(contract.FRAME_ODOM, contract.FRAME_BASE)
        self._joints = cdr.JointStateEncoder([str(n) for n in joint_names])
        self.frames = FramePublisher(node, joint_names, robot_description, tf_rate_hz) if robot_description else None
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
        if self.frames is not None:
            self.frames.publish(stamp_ns, position, quat_xyzw, q)


def plain_cdr_fallback(decode: Callable[[bytes], T], msg_type: type) -> Callable[[bytes], T]:
    """``decode`` (a :mod:`spot_policy.ros.cdr` reader), and for a payload in another encoding (a
    middleware's XCDR2) the same message re-serialized as plain CDR by rclpy first. Raises only
    :class:`~spot_policy.ros.cdr.MalformedMessage` for a payload it cannot read."""

    def read(data: bytes) -> T:
        try:
            return decode(data)
        except cdr.UnsupportedEncoding:
            try:
                plain = serialize_message(deserialize_message(data, msg_type))
            except Exception as exc:  # rclpy raises its RMWError for bytes that are no such message
                raise cdr.MalformedMessage(f"{len(data)} bytes: {exc}".splitlines()[0]) from None
            return decode(plain)

    return read


#: A bridge's joint_command subscription: reliable like the policy node's publisher, depth 10 so a
#: lock-stepped bridge never drops one.
JOINT_COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def subscribe_joint_command(
    node: Node,
    on_command: Callable[[tuple[str, ...], np.ndarray], None],
    guard: InputGuard,
    hot: bool = False,
    qos: QoSProfile = JOINT_COMMAND_QOS,
) -> HotInputs:
    """The bridge's ``joint_command`` input, read raw (:mod:`spot_policy.ros.cdr`): names and positions.

    A payload that cannot be read is counted and reported by ``guard`` and otherwise ignored: no
    command arrived, so the bridge's command timeout brings its safe behaviour as for a lost one.
    ``hot``: the executor never waits on it; the returned :class:`~spot_policy.ros.hot_loop.HotInputs`
    is what the node's ``hot_inputs()`` offers (a lock-stepped bridge waits on its command itself).
    """
    read = plain_cdr_fallback(cdr.JointStateDecoder(), JointState)

    def on_raw(data: bytes) -> None:
        view = guard.read(contract.TOPIC_JOINT_COMMAND, read, data)
        if view is not None:
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
