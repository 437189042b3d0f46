"""The bridge side of the topic contract: ``imu/data``, ``odom`` and ``joint_states`` with one stamp.

Every bridge (the simulator's, the robot's) publishes exactly these messages, so they are filled in
one place. Messages are reused, and arrays go in as ``array('d')``, which the generated setters take
as they are (a list is checked element by element).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Imu, JointState

from spot_policy import contract


def to_time(ns: int) -> Time:
    """An exact builtin_interfaces/Time from integer nanoseconds (no float rounding)."""
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def doubles(values: np.ndarray | Sequence[float]) -> array:
    out = array("d")
    out.frombytes(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return out


class StatePublisher:
    """Publishes one state instant: imu and odom first, joint_states last (an input-triggered policy
    node steps on joint_states once that instant's imu and odom are in)."""

    def __init__(self, node: Node, joint_names: Sequence[str]) -> None:
        self.imu_pub = node.create_publisher(Imu, contract.TOPIC_IMU, qos_profile_sensor_data)
        self.odom_pub = node.create_publisher(Odometry, contract.TOPIC_ODOM, qos_profile_sensor_data)
        self.joint_states_pub = node.create_publisher(JointState, contract.TOPIC_JOINT_STATES, qos_profile_sensor_data)
        self._imu, self._odom, self._joints = Imu(), Odometry(), JointState()
        self._imu.header.frame_id = contract.FRAME_BASE
        self._odom.header.frame_id, self._odom.child_frame_id = contract.FRAME_ODOM, contract.FRAME_BASE
        self._joints.name = [str(n) for n in joint_names]
        self.published = 0

    def publish(
        self,
        stamp: Time,
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
        x, y, z, w = (float(v) for v in quat_xyzw)
        imu = self._imu
        imu.header.stamp = stamp
        imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w = x, y, z, w
        imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = (float(v) for v in ang_vel_body)
        imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z = (
            float(v) for v in lin_acc_body
        )
        self.imu_pub.publish(imu)

        odom = self._odom
        odom.header.stamp = stamp
        pose = odom.pose.pose
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in position)
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = x, y, z, w
        twist = odom.twist.twist
        twist.linear.x, twist.linear.y, twist.linear.z = (float(v) for v in lin_vel_body)
        twist.angular.x, twist.angular.y, twist.angular.z = (float(v) for v in ang_vel_body)
        self.odom_pub.publish(odom)

        joints = self._joints
        joints.header.stamp = stamp
        joints.position, joints.velocity, joints.effort = doubles(q), doubles(dq), doubles(effort)
        self.joint_states_pub.publish(joints)
        self.published += 1
