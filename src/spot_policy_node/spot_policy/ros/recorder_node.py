"""``ros2 run spot_policy recorder``: record topics into a rosbag2/MCAP bag without ``ros2 bag``.

The fallback recorder of ``record:=true`` where rosbag2 is not installed (pip-only machines).
Subscriptions are raw (``raw=True``): the CDR bytes go straight to
:class:`spot_policy.ros.bag_recorder.BagRecorder`, nothing is deserialized. Messages are taken in
batches every 20 ms (wall clock) and written in the order the middleware received them: no
executor wake-up per message (a robot streams ~1000/s, a lockstep simulation several thousand).
Timestamps are receive times: on the wall clock the middleware's; under ``use_sim_time`` the
simulated time at reception (as ``ros2 bag record --use-sim-time``), i.e. the last ``clock``
message received before it; messages that arrive before the first ``clock`` are stamped 0. When
``clock`` is not among the recorded topics, the node's simulated clock when the batch is taken.

Parameters:
- ``out``: the bag folder to create (must not exist, or be empty).
- ``topics``: ``"topic:pkg/msg/Type"`` strings, optionally ``":best_effort"`` or ``":reliable"``
  appended; default :data:`DEFAULT_TOPICS`. Relative names take the node's namespace.

QoS: the sensor streams and ``clock`` are subscribed best-effort, which also receives from reliable
publishers (``clock`` too, since rclcpp's ClockQoS publishes it best-effort); everything else
reliable, so commands and segment markers are not dropped. The bag stores the QoS the publishers
offer (as ``ros2 bag record``). SIGINT/SIGTERM close the bag cleanly.
"""

from __future__ import annotations

import bisect
import importlib
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidHandle
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.subscription import Subscription
from rosgraph_msgs.msg import Clock as ClockMsg

from spot_policy.core import contract
from spot_policy.core.realtime_gc import freeze_startup_heap
from spot_policy.ros import cdr
from spot_policy.ros.bag_recorder import (
    RELIABLE,
    SENSOR_DATA,
    BagRecorder,
    BagRecorderError,
    TopicQos,
    check_type,
    default_typestore,
)
from spot_policy.ros.node_main import STOP_POLL_S, StopSignals
from spot_policy.ros.polling import PolledGroup, take_raw
from spot_policy.ros.state_publisher import plain_cdr_fallback

NODE_NAME = "recorder"
#: Topics on which a best-effort subscription is the compatible choice (any publisher QoS).
LATCHED_TOPICS = frozenset(
    {
        contract.TOPIC_PROFILE_SEGMENT,
        "policy_node/events",
        contract.TOPIC_ROBOT_DESCRIPTION,
        contract.TOPIC_TF_STATIC.lstrip("/"),
    }
)
BEST_EFFORT_TOPICS = frozenset({contract.TOPIC_JOINT_STATES, contract.TOPIC_IMU, contract.TOPIC_ODOM, "clock"})
#: Deep queues: a lockstep run publishes in bursts much faster than real time.
QUEUE_DEPTH = 1000
#: Messages are taken this often, wall clock (a 333 Hz stream: ~7 per poll).
POLL_PERIOD_S = 0.02

DEFAULT_TOPICS: tuple[str, ...] = (
    f"{contract.TOPIC_JOINT_STATES}:sensor_msgs/msg/JointState",
    f"{contract.TOPIC_IMU}:sensor_msgs/msg/Imu",
    f"{contract.TOPIC_ODOM}:nav_msgs/msg/Odometry",
    f"{contract.TOPIC_CMD_VEL}:geometry_msgs/msg/Twist",
    f"{contract.TOPIC_JOY}:sensor_msgs/msg/Joy",
    f"{contract.TOPIC_JOINT_COMMAND}:sensor_msgs/msg/JointState",
    f"{contract.TOPIC_DIAGNOSTICS}:diagnostic_msgs/msg/DiagnosticArray",
    f"{contract.TOPIC_CLOCK}:rosgraph_msgs/msg/Clock",
    f"{contract.TOPIC_PROFILE_SEGMENT}:std_msgs/msg/String",
    # What Foxglove and RViz2 need to show the robot from the bag.
    f"{contract.TOPIC_ROBOT_DESCRIPTION}:std_msgs/msg/String",
    f"{contract.TOPIC_TF}:tf2_msgs/msg/TFMessage",
    f"{contract.TOPIC_TF_STATIC}:tf2_msgs/msg/TFMessage",
    "policy_node/observation:std_msgs/msg/Float32MultiArray",
    "policy_node/action:std_msgs/msg/Float32MultiArray",
    # What `spot-policy replay` needs to re-run the node (spot_policy.ros.debug_stream).
    "policy_node/step:std_msgs/msg/Int64MultiArray",
    "policy_node/events:std_msgs/msg/String",
)


@dataclass(frozen=True)
class TopicSpec:
    topic: str
    msgtype: str
    reliable: bool


def parse_topic_spec(spec: str) -> TopicSpec:
    """``"odom:nav_msgs/msg/Odometry[:best_effort|:reliable]"`` -> :class:`TopicSpec`."""
    parts = spec.strip().split(":")
    if len(parts) not in (2, 3) or not parts[0] or parts[1].count("/") != 2:
        raise ValueError(f"topic entry {spec!r} is not 'topic:pkg/msg/Type'; fix: e.g. 'odom:nav_msgs/msg/Odometry'")
    topic, msgtype = parts[0], parts[1]
    if len(parts) == 3:
        if parts[2] not in ("best_effort", "reliable"):
            raise ValueError(f"topic entry {spec!r}: QoS {parts[2]!r}; fix: use best_effort or reliable")
        reliable = parts[2] == "reliable"
    else:
        reliable = topic.lstrip("/") not in BEST_EFFORT_TOPICS
    return TopicSpec(topic, msgtype, reliable)


class RecorderNode(Node):
    """Subscribes raw to every requested topic and appends each message to the bag."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.declare_parameter("out", "")
        self.declare_parameter("topics", list(DEFAULT_TOPICS))
        # A lock-stepped sim bridge publishes its state reliable and transient-local: read it so.
        self.declare_parameter("lockstep", False)
        out = str(self.get_parameter("out").value)
        if not out:
            raise ValueError("parameter 'out' is empty; fix: give the bag folder, e.g. -p out:=runs/bag")
        specs = [parse_topic_spec(s) for s in self.get_parameter("topics").value]
        if not specs:
            raise ValueError("parameter 'topics' is empty; fix: list 'topic:pkg/msg/Type' entries")
        # Validate everything before the bag folder is created: a bad entry leaves nothing behind.
        resolved: list[tuple[str, TopicSpec, type]] = []
        typestore = default_typestore()
        for spec in specs:
            check_type(spec.msgtype, typestore)
            topic = self.resolve_topic_name(spec.topic)  # fully qualified and remapped, as ros2 bag stores it
            if topic in {t for t, _, _ in resolved}:
                raise ValueError(f"topic {topic} is listed twice; fix: list each topic once")
            resolved.append((topic, spec, _import_message(spec.msgtype)))
        self.bag = BagRecorder(Path(out), typestore=typestore)
        # Messages are taken in batches, in receive order (see spot_policy.ros.polling).
        self._polled: list[tuple[Subscription, str, str]] = []
        self._pending: list[tuple[int, int, str, str, bytes]] = []  # (received, order, topic, type, data)
        self._order = 0
        self._poll_lock = threading.Lock()
        self._sim_time = bool(self.get_parameter("use_sim_time").value)
        clock_topic = self.resolve_topic_name(contract.TOPIC_CLOCK)
        self._clock_topic = clock_topic if any(t == clock_topic for t, _, _ in resolved) else None
        self._read_clock = plain_cdr_fallback(cdr.decode_clock, ClockMsg)
        self._sim_now_ns = 0  # the last recorded clock message's time
        lockstep_state = (contract.TOPIC_JOINT_STATES, contract.TOPIC_IMU, contract.TOPIC_ODOM)
        lossless = bool(self.get_parameter("lockstep").value)
        for topic, spec, msg_class in resolved:
            self.bag.set_qos(topic, RELIABLE if spec.reliable else SENSOR_DATA)
            state = lossless and spec.topic.lstrip("/") in lockstep_state
            reliability = ReliabilityPolicy.RELIABLE if spec.reliable or state else ReliabilityPolicy.BEST_EFFORT
            # Latched topics (and a lock-stepped bridge's state) are read with transient-local
            # durability, so what was published before the recorder joined still arrives (a
            # transient-local reader ignores volatile writers, hence only for these).
            durability = (
                DurabilityPolicy.TRANSIENT_LOCAL
                if spec.topic.lstrip("/") in LATCHED_TOPICS or state
                else DurabilityPolicy.VOLATILE
            )
            subscription = self.create_subscription(
                msg_class,
                topic,
                _never_called,
                QoSProfile(depth=QUEUE_DEPTH, reliability=reliability, durability=durability),
                raw=True,
                callback_group=PolledGroup(),
            )
            self._polled.append((subscription, topic, spec.msgtype))
        self.create_timer(POLL_PERIOD_S, self._poll, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"recording {len(resolved)} topics to {out}")

    def _poll(self, final: bool = False) -> None:
        """Write, in receive order, every message received up to now. Taken after the cut-off
        time, so nothing received before it is still waiting; later ones wait for the next poll."""
        with self._poll_lock:  # the executor's timer, or main() flushing at a signal
            self._take_and_write(final)

    def _take_and_write(self, final: bool) -> None:
        cutoff = time.time_ns()
        pending = self._pending
        try:
            for subscription, topic, msgtype in self._polled:
                while (taken := take_raw(subscription)) is not None:
                    data, info = taken
                    self._order += 1
                    pending.append((info.get("received_timestamp") or cutoff, self._order, topic, msgtype, data))
        except InvalidHandle:
            pass  # shut down already (main() flushed before that): write what was taken
        pending.sort()
        ready = len(pending) if final else bisect.bisect_right(pending, (cutoff, float("inf")))
        if not self._sim_time:
            for received, _, topic, msgtype, data in pending[:ready]:
                self._write(topic, msgtype, data, received)
        elif self._clock_topic is None:
            now_ns = self.get_clock().now().nanoseconds
            for _, _, topic, msgtype, data in pending[:ready]:
                self._write(topic, msgtype, data, now_ns)
        else:
            for _, _, topic, msgtype, data in pending[:ready]:
                if topic == self._clock_topic:
                    self._sim_now_ns = self._read_clock(data)
                self._write(topic, msgtype, data, self._sim_now_ns)
        del pending[:ready]

    def _write(self, topic: str, msgtype: str, data: bytes, stamp: int) -> None:
        if not self.bag.has_topic(topic):
            self._store_offered_qos(topic)
        try:
            self.bag.write(topic, msgtype, data, stamp)
        except BagRecorderError:
            if not self.bag.closed:
                raise
            # closed while the executor still ran: the recording is over, drop the message

    def _store_offered_qos(self, topic: str) -> None:
        """Store what the topic's publishers offer (as ``ros2 bag record`` does): ``ros2 bag play``
        re-offers it, so a best-effort sensor stays best-effort and a reliable clock reliable."""
        offered: list[TopicQos] = []
        for info in self.get_publishers_info_by_topic(topic):
            qos = info.qos_profile
            offered.append(
                TopicQos(
                    reliable=qos.reliability == ReliabilityPolicy.RELIABLE,
                    depth=qos.depth or 10,  # remote publishers' depth is not discovered: 0
                    transient_local=qos.durability == DurabilityPolicy.TRANSIENT_LOCAL,
                )
            )
        if offered:  # the publisher may be gone already: keep the subscription's default then
            self.bag.set_qos(topic, offered)

    def flush(self) -> None:
        """Write everything received so far; call before shutting down."""
        if not self.bag.closed:
            self._poll(final=True)

    def close(self) -> dict[str, int]:
        """Finalize the bag (``metadata.yaml``); safe to call more than once."""
        self.flush()
        return self.bag.close()


def _never_called(_data: bytes) -> None:
    """The subscriptions' callback: they are polled (PolledGroup), the executor never runs it."""


def _import_message(msgtype: str) -> type:
    """The rclpy message class of ``pkg/msg/Type`` (raises ValueError naming the type)."""
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        raise ValueError(f"message type {msgtype} is not installed; fix: install its ROS package") from None


def _spin(executor: SingleThreadedExecutor, failure: list[BaseException], done: threading.Event) -> None:
    """The executor's thread: every bag write happens here while it runs; it ends when ``done`` is
    set (main() then wakes its wait), before anything it uses is destroyed or shut down."""
    try:
        while not done.is_set() and executor.context.ok():
            executor.spin_once(timeout_sec=STOP_POLL_S)
    except ExternalShutdownException:
        pass  # the context went away under it (not main(): it stops the thread first)
    except BaseException as exc:  # a failed write: main() closes the bag and reports it
        failure.append(exc)


def main(args: list[str] | None = None) -> int:
    """Entry point: records until SIGINT/SIGTERM, then writes the bag's metadata. Exit 0, 1 or 2.

    The executor spins in a thread of its own and the main thread waits for a stop request
    (:class:`~spot_policy.ros.node_main.StopSignals`: signals never raise), ends that thread, then
    flushes and closes the bag; further signals cannot cut the close short. rclpy's own signal
    handling stays off: its signal thread could race the exit and abort the process ("terminate
    called without an active exception", seen about once in 15 SIGINTs) after the bag was closed.
    The context is shut down only once the thread has ended: shutting it down under the thread's
    wait to end the spin crashed the recorder once in a CI run (a segmentation fault as the wait
    released its handles), and its bag was left without metadata.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = StopSignals(NODE_NAME).install()
    node: RecorderNode | None = None
    spinner: threading.Thread | None = None
    failure: list[BaseException] = []
    done = threading.Event()
    code = 0
    try:
        node = RecorderNode()
        wake = node.create_guard_condition(lambda: None)  # ends the thread's wait at once
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        freeze_startup_heap()
        spinner = threading.Thread(target=_spin, args=(executor, failure, done), name="recorder-spin", daemon=True)
        spinner.start()
        while spinner.is_alive() and not stop.requested:
            spinner.join(timeout=0.2)
    except (ValueError, BagRecorderError) as exc:
        print(f"{NODE_NAME}: {exc}", file=sys.stderr)
        code = 2
    finally:
        if spinner is not None:
            done.set()
            wake.trigger()
            spinner.join(timeout=5.0)
            if spinner.is_alive():  # stuck in a write: the shutdown is all that can end it
                rclpy.try_shutdown()
                spinner.join(timeout=5.0)
        if node is not None:
            node.flush()  # while the subscriptions still exist; nothing else runs now
        rclpy.try_shutdown()
        if node is not None:
            counts = node.close()
            total = sum(counts.values())
            print(f"{NODE_NAME}: wrote {total} messages on {len(counts)} topics to {node.bag.path}", file=sys.stderr)
            node.destroy_node()
    stop.ignore_from_now()
    if failure:
        print(f"{NODE_NAME}: recording stopped: {failure[0]!r}", file=sys.stderr)
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
