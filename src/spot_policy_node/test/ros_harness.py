"""A test-side ROS node that plays the bridge and the teleop around a policy node, over real DDS."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Imu, JointState
from std_srvs.srv import Trigger

from spot_policy.core import contract
from spot_policy.ros.hot_loop import HotLoop, hot_inputs_of


def to_stamp(t: float):
    from builtin_interfaces.msg import Time

    sec = int(np.floor(t))
    return Time(sec=sec, nanosec=round((t - sec) * 1e9))


class BridgeHarness(Node):
    """Publishes clock and state, calls the policy node's services, records what it publishes."""

    def __init__(self, policy_node: str = "policy_node") -> None:
        super().__init__("test_bridge")
        self.policy_node = policy_node
        self.clock_pub = self.create_publisher(Clock, "clock", 10)
        self.js_pub = self.create_publisher(JointState, contract.TOPIC_JOINT_STATES, qos_profile_sensor_data)
        self.imu_pub = self.create_publisher(Imu, contract.TOPIC_IMU, qos_profile_sensor_data)
        self.odom_pub = self.create_publisher(Odometry, contract.TOPIC_ODOM, qos_profile_sensor_data)
        self.cmd_pub = self.create_publisher(Twist, contract.TOPIC_CMD_VEL, 10)
        self.commands: list[tuple[float, JointState]] = []
        self.diagnostics: list[DiagnosticArray] = []
        self._lock = threading.Lock()
        self.create_subscription(
            JointState,
            contract.TOPIC_JOINT_COMMAND,
            self._on_command,
            QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE),
        )
        self.create_subscription(DiagnosticArray, contract.TOPIC_DIAGNOSTICS, self.diagnostics.append, 10)
        self.clients_ = {
            n: self.create_client(Trigger, f"/{policy_node}/{n}") for n in ("stand", "walk", "stop", "reset")
        }

    def _on_command(self, msg: JointState) -> None:
        with self._lock:
            self.commands.append((time.monotonic(), msg))

    def take_commands(self) -> list[JointState]:
        with self._lock:
            out = [m for _, m in self.commands]
            self.commands.clear()
        return out

    def publish_clock(self, t: float) -> None:
        self.clock_pub.publish(Clock(clock=to_stamp(t)))

    def publish_state(
        self,
        t: float,
        q: np.ndarray,
        dq: np.ndarray | None = None,
        names: Sequence[str] = contract.SDK_JOINT_ORDER,
        imu: bool = True,
        odom: bool = True,
        joint_states: bool = True,
        quat_xyzw: Sequence[float] = (0.0, 0.0, 0.0, 1.0),
        clock: bool = True,
    ) -> None:
        """State at time t. ``q``/``dq`` are in articulation order; sent in the order of ``names``."""
        stamp = to_stamp(t)
        if clock:
            self.publish_clock(t)
        if imu:
            msg = Imu()
            msg.header.stamp, msg.header.frame_id = stamp, contract.FRAME_BASE
            msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = map(float, quat_xyzw)
            self.imu_pub.publish(msg)
        if odom:
            msg = Odometry()
            msg.header.stamp, msg.header.frame_id = stamp, contract.FRAME_ODOM
            msg.child_frame_id = contract.FRAME_BASE
            msg.pose.pose.orientation.w = 1.0
            self.odom_pub.publish(msg)
        if joint_states:
            canonical = [contract.canonical_joint_name(n) for n in names]
            order = contract.index_map(contract.ISAAC_JOINT_ORDER, canonical)
            dq = np.zeros(12) if dq is None else dq
            msg = JointState()
            msg.header.stamp = stamp
            msg.name = list(names)
            msg.position = [float(v) for v in np.asarray(q)[order]]
            msg.velocity = [float(v) for v in np.asarray(dq)[order]]
            msg.effort = [0.0] * len(names)
            self.js_pub.publish(msg)

    def send_cmd_vel(self, vx: float, vy: float, wz: float) -> None:
        msg = Twist()
        msg.linear.x, msg.linear.y, msg.angular.z = float(vx), float(vy), float(wz)
        self.cmd_pub.publish(msg)

    def call(self, service: str, timeout: float = 5.0) -> Trigger.Response:
        client = self.clients_[service]
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service /{self.policy_node}/{service} not available")
        future = client.call_async(Trigger.Request())
        end = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > end:
                raise TimeoutError(f"/{self.policy_node}/{service} did not answer")
            time.sleep(0.005)
        return future.result()

    def last_diagnostic(self) -> dict[str, str]:
        status = self.diagnostics[-1].status[0]
        return {"level": status.level, "message": status.message, **{kv.key: kv.value for kv in status.values}}


class Spinner:
    """Spins nodes on a background executor so the test thread can publish and wait; a node with
    hot inputs (spot_policy.ros.hot_loop) gets a HotLoop of its own, as run_node gives it."""

    def __init__(self, *nodes: Node) -> None:
        self.executor = SingleThreadedExecutor()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True)]
        self._hot: list[tuple[HotLoop, SingleThreadedExecutor]] = []
        for node in nodes:
            hot = hot_inputs_of(node)
            if hot is None:
                self.executor.add_node(node)
                continue
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            loop = HotLoop(executor, hot)
            self._hot.append((loop, executor))
            self._threads.append(threading.Thread(target=loop.spin, args=(node.context,), daemon=True))
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and rclpy.ok():
            try:
                self.executor.spin_once(timeout_sec=0.01)
            except ExternalShutdownException:
                return  # a test shut rclpy down while this thread was waiting

    def close(self) -> None:
        self._stop.set()
        for loop, _ in self._hot:
            loop.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self.executor.shutdown()
        for _, executor in self._hot:
            executor.shutdown()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, poll: float = 0.005) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll)
    return predicate()
