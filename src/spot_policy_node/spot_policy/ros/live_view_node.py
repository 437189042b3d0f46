"""``ros2 run spot_policy live_view``: the robot live in Foxglove, without a ROS installation.

Serves the contract's topics over the Foxglove WebSocket protocol (``foxglove.websocket.v1``, the
Foxglove SDK's server): ``robot_description``, ``/tf``, ``/tf_static`` (the robot model and its
frames), ``joint_states`` and ``joint_command`` (positions vs targets), ``odom`` and ``cmd_vel``
(achieved vs commanded velocity), ``imu/data``, ``diagnostics`` and the policy node's events. The
messages go out as the CDR bytes DDS delivered, with their ROS 2 message definitions as schemas
(``ros2msg``), exactly as Foxglove's own ROS bridge serves them; nothing is converted.

A client may publish ``cmd_vel`` (geometry_msgs/Twist, ``cdr`` or ``json``: Foxglove's Teleop
panel) and call the policy node's ``stand`` / ``walk`` / ``stop`` (Foxglove's Service Call panel).
The newest client command is republished at ``cmd_vel_rate_hz`` while younger than
``cmd_vel_hold_s`` (:mod:`spot_policy.core.client_command`); no other topic is accepted from a client.

Parameters: ``host`` (default 127.0.0.1: this machine only), ``port`` (8765), ``max_rate_hz`` (per
high-rate topic, newest message only), ``accept_cmd_vel``, ``cmd_vel_rate_hz``, ``cmd_vel_hold_s``,
``policy_node``. Messages are taken in batches on a steady timer (no executor wake-up per message).
"""

from __future__ import annotations

import contextlib
import json
import struct
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from geometry_msgs.msg import Twist
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.subscription import Subscription
from std_srvs.srv import Trigger

from spot_policy.core import contract
from spot_policy.core.client_command import ClientCommandError, CommandHold, checked, twist_from_json
from spot_policy.ros import cdr
from spot_policy.ros.bag_recorder import default_typestore
from spot_policy.ros.node_main import run_node
from spot_policy.ros.node_parts import read_only
from spot_policy.ros.polling import PolledGroup, take_raw
from spot_policy.ros.recorder_node import _import_message

NODE_NAME = "live_view"
ACTIONS = ("stand", "walk", "stop")
SERVICE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ServedTopic:
    topic: str
    msgtype: str
    throttled: bool = False  # forward only the newest message per poll (a state stream)
    latched: bool = False  # transient local (published once)
    best_effort: bool = False


SERVED: tuple[ServedTopic, ...] = (
    ServedTopic(contract.TOPIC_ROBOT_DESCRIPTION, "std_msgs/msg/String", latched=True),
    ServedTopic(contract.TOPIC_TF_STATIC, "tf2_msgs/msg/TFMessage", latched=True),
    ServedTopic(contract.TOPIC_TF, "tf2_msgs/msg/TFMessage", throttled=True),
    ServedTopic(contract.TOPIC_JOINT_STATES, "sensor_msgs/msg/JointState", throttled=True, best_effort=True),
    ServedTopic(contract.TOPIC_IMU, "sensor_msgs/msg/Imu", throttled=True, best_effort=True),
    ServedTopic(contract.TOPIC_ODOM, "nav_msgs/msg/Odometry", throttled=True, best_effort=True),
    ServedTopic(contract.TOPIC_JOINT_COMMAND, "sensor_msgs/msg/JointState", throttled=True),
    ServedTopic(contract.TOPIC_CMD_VEL, "geometry_msgs/msg/Twist"),
    ServedTopic(contract.TOPIC_DIAGNOSTICS, "diagnostic_msgs/msg/DiagnosticArray"),
    ServedTopic("policy_node/events", "std_msgs/msg/String", latched=True),
)


def ros2msg_schema(msgtype: str) -> bytes:
    """The ``ros2msg`` schema of a type: its definition and its dependencies' (as rosbag2's MCAP stores it)."""
    text, _ = default_typestore().generate_msgdef(msgtype, ros_version=2)
    return text.encode()


def _absolute(topic: str) -> str:
    return "/" + topic.lstrip("/")


class LiveViewNode(Node):
    """Forwards the served topics to a Foxglove WebSocket server; relays client cmd_vel and service calls."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declared = self.declare_parameters(
            "",
            [
                ("host", "127.0.0.1", read_only("address to serve on (0.0.0.0: every interface)")),
                ("port", 8765, read_only("WebSocket port (0: any free port)")),
                ("max_rate_hz", 50.0, read_only("forwarding rate of the state streams (newest message only)")),
                ("accept_cmd_vel", True, read_only("relay cmd_vel published by a client (Teleop panel)")),
                ("cmd_vel_rate_hz", 20.0, read_only("republish rate of the client's newest cmd_vel")),
                ("cmd_vel_hold_s", 1.5, read_only("a client cmd_vel counts this long (Teleop panel: 1 Hz)")),
                ("policy_node", "policy_node", read_only("node whose stand/walk/stop a client may call")),
            ],
        )
        p = {param.name: param.value for param in declared}
        import foxglove  # the Foxglove SDK (PyPI: foxglove-sdk)
        from foxglove.websocket import Capability

        rate, cmd_rate = float(p["max_rate_hz"]), float(p["cmd_vel_rate_hz"])
        if not rate > 0 or not cmd_rate > 0:
            raise ValueError("parameters max_rate_hz and cmd_vel_rate_hz must be > 0")
        self._accept_cmd_vel = bool(p["accept_cmd_vel"])
        self._hold = CommandHold(float(p["cmd_vel_hold_s"]))
        self._hold_lock = threading.Lock()
        self._client_channels: dict[tuple[int, int], tuple[str, str]] = {}  # (client, channel) -> (topic, encoding)
        self._foxglove = foxglove.Context()
        self._channels: list[tuple[Subscription, ServedTopic, Any]] = []
        for served in SERVED:
            schema = foxglove.Schema(name=served.msgtype, encoding="ros2msg", data=ros2msg_schema(served.msgtype))
            channel = foxglove.Channel(
                _absolute(served.topic), schema=schema, message_encoding="cdr", context=self._foxglove
            )
            qos = QoSProfile(
                depth=1 if served.throttled else 100,
                reliability=ReliabilityPolicy.BEST_EFFORT if served.best_effort else ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.TRANSIENT_LOCAL if served.latched else DurabilityPolicy.VOLATILE,
            )
            subscription = self.create_subscription(
                _import_message(served.msgtype),
                served.topic,
                _never_called,
                qos,
                raw=True,
                callback_group=PolledGroup(),
            )
            self._channels.append((subscription, served, channel))
        self._clock = self.create_subscription(
            _import_message("rosgraph_msgs/msg/Clock"),
            contract.TOPIC_CLOCK,
            _never_called,
            QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT),
            raw=True,
            callback_group=PolledGroup(),
        )
        self._sim_now_ns: int | None = None
        # Latched topics: the last message, sent again when a client subscribes (the server has no
        # transient-local of its own; a viewer that connects later still gets the robot model).
        self._latched: dict[str, bytes] = {}
        self._resend: set[str] = set()
        self._resend_lock = threading.Lock()
        self._cmd_pub = self.create_publisher(Twist, contract.TOPIC_CMD_VEL, 10)
        base = str(p["policy_node"]).rstrip("/")
        self._triggers = {a: self.create_client(Trigger, f"{base}/{a}") for a in ACTIONS}
        self.forwarded = 0
        self.relayed = 0

        capabilities = [Capability.Time, Capability.Services]
        if self._accept_cmd_vel:
            capabilities.append(Capability.ClientPublish)
        try:
            self.server = foxglove.start_server(
                name="spot_policy",
                host=str(p["host"]),
                port=int(p["port"]),
                capabilities=capabilities,
                supported_encodings=["cdr", "json"],
                server_listener=_Listener(self),
                services=[self._service(base, a) for a in ACTIONS],
                context=self._foxglove,
            )
        except RuntimeError as exc:
            raise ValueError(
                f"cannot serve on {p['host']}:{p['port']} ({exc}); fix: choose another port (--foxglove-port)"
            ) from None
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(1.0 / rate, self._forward, clock=steady)
        self.create_timer(1.0 / cmd_rate, self._relay, clock=steady)
        self.url = f"ws://{p['host']}:{self.server.port}"
        accepts = "accepts cmd_vel and stand/walk/stop" if self._accept_cmd_vel else "view only: no client cmd_vel"
        self.get_logger().info(
            f"live view: {self.url} ({accepts}); open it in Foxglove (Open connection -> Foxglove WebSocket) "
            f"with the layout config/foxglove/spot.json, or {self.server.app_url()}"
        )

    # ---------------------------------------------------------------- topics -> client
    def _forward(self) -> None:
        """Everything received since the last call: the newest of each state stream, all of the rest."""
        while (taken := take_raw(self._clock)) is not None:
            with contextlib.suppress(ValueError, IndexError, struct.error):  # malformed: keep the last good time
                self._sim_now_ns = cdr.decode_clock(taken[0])
        with self._resend_lock:
            resend, self._resend = self._resend, set()
        for subscription, served, channel in self._channels:
            newest: bytes | None = None
            topic = _absolute(served.topic)
            if topic in resend and topic in self._latched:
                channel.log(self._latched[topic], log_time=self._log_time())
            while (taken := take_raw(subscription)) is not None:
                if served.latched:
                    self._latched[topic] = taken[0]
                if served.throttled:
                    newest = taken[0]
                else:
                    channel.log(taken[0], log_time=self._log_time())
                    self.forwarded += 1
            if newest is not None:
                channel.log(newest, log_time=self._log_time())
                self.forwarded += 1
        self.server.broadcast_time(self._log_time())

    def _log_time(self) -> int:
        """Simulated time where a ``clock`` is published (the stamps are sim time), else wall time."""
        return self._sim_now_ns if self._sim_now_ns is not None else time.time_ns()

    def client_subscribed(self, topic: str) -> None:
        """A client subscribed to ``topic``: a latched one's last message goes out again at the next poll."""
        with self._resend_lock:
            self._resend.add(topic)

    # ---------------------------------------------------------------- client -> cmd_vel
    def client_advertised(self, client: int, channel: int, topic: str, encoding: str) -> None:
        if topic.lstrip("/") != contract.TOPIC_CMD_VEL:
            self.get_logger().warning(f"client {client} advertised {topic}: ignored, only /cmd_vel is accepted")
            return
        self._client_channels[(client, channel)] = (topic, encoding)
        self.get_logger().info(f"client {client} publishes /cmd_vel ({encoding})")

    def client_unadvertised(self, client: int, channel: int) -> None:
        if self._client_channels.pop((client, channel), None) is not None:
            with self._hold_lock:
                self._hold.release()

    def client_message(self, client: int, channel: int, data: bytes) -> None:
        """A client's cmd_vel; anything unusable is dropped with a (throttled) warning, never raised."""
        known = self._client_channels.get((client, channel))
        if known is None:
            return
        try:
            if known[1] == "json":
                command = twist_from_json(data)
            elif known[1] == "cdr":
                msg = deserialize_message(bytes(data), Twist)
                command = checked((msg.linear.x, msg.linear.y, msg.angular.z))
            else:
                raise ClientCommandError(f"encoding '{known[1]}' is not supported (cdr, json)")
        except Exception as exc:  # a reader of raw input never raises out of a callback
            self.get_logger().warning(f"client {client} cmd_vel dropped: {exc}", throttle_duration_sec=2.0)
            return
        with self._hold_lock:
            self._hold.update(command, time.monotonic())

    def _relay(self) -> None:
        with self._hold_lock:
            command = self._hold.due(time.monotonic())
        if command is None:
            return
        msg = Twist()
        msg.linear.x, msg.linear.y, msg.angular.z = command
        self._cmd_pub.publish(msg)
        self.relayed += 1

    # ---------------------------------------------------------------- client -> services
    def _service(self, base: str, action: str) -> Any:
        import foxglove

        def schema(name: str, text: str) -> Any:
            return foxglove.MessageSchema(
                encoding="cdr", schema=foxglove.Schema(name=name, encoding="ros2msg", data=text.encode())
            )

        # An empty ROS 2 request carries one placeholder byte in CDR (rosidl's name for it).
        return foxglove.Service(
            f"/{base.lstrip('/')}/{action}",
            schema=foxglove.ServiceSchema(
                "std_srvs/srv/Trigger",
                request=schema("std_srvs/srv/Trigger_Request", "uint8 structure_needs_at_least_one_member\n"),
                response=schema("std_srvs/srv/Trigger_Response", "bool success\nstring message\n"),
            ),
            handler=lambda request: self._call(action, request.encoding),
        )

    def _call(self, action: str, encoding: str) -> bytes:
        """Runs on the server's thread: calls the policy node's service and waits for its answer."""
        response = Trigger.Response(success=False, message=f"{action}: the policy node's service is not available")
        client = self._triggers[action]
        if client.service_is_ready():
            done = threading.Event()
            future = client.call_async(Trigger.Request())
            future.add_done_callback(lambda _: done.set())
            if done.wait(SERVICE_TIMEOUT_S) and future.result() is not None:
                response = future.result()
            else:
                response.message = f"{action}: no answer within {SERVICE_TIMEOUT_S:g} s"
        self.get_logger().info(f"client called {action}: {response.message}")
        if encoding == "json":
            return json.dumps({"success": bool(response.success), "message": response.message}).encode()
        return serialize_message(response)

    def destroy_node(self) -> None:
        self.server.stop()
        super().destroy_node()


class _Listener:
    """The SDK's ServerListener: client events, forwarded to the node (on the server's threads)."""

    def __init__(self, node: LiveViewNode) -> None:
        self._node = node

    def on_subscribe(self, client: Any, channel: Any) -> None:
        self._node.client_subscribed(channel.topic)

    def on_client_advertise(self, client: Any, channel: Any) -> None:
        self._node.client_advertised(client.id, channel.id, channel.topic, channel.encoding)

    def on_client_unadvertise(self, client: Any, client_channel_id: int) -> None:
        self._node.client_unadvertised(client.id, client_channel_id)

    def on_message_data(self, client: Any, client_channel_id: int, data: bytes) -> None:
        self._node.client_message(client.id, client_channel_id, data)


def _never_called(_data: bytes) -> None:
    """Subscriptions are polled (PolledGroup): the executor never calls them."""


def main(args: list[str] | None = None) -> int:
    return run_node(NODE_NAME, LiveViewNode, args)


if __name__ == "__main__":
    sys.exit(main())
