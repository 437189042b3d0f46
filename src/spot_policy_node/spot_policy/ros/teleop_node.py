"""rclpy node ``teleop``: gamepad (``joy``) -> ``cmd_vel`` and the policy node's Trigger services.

Thin on purpose: dead-man, deadband, joy timeout, button edges and when to publish live in
``spot_policy.core.teleop``. This node owns the QoS, the timer, the parameters and the service
clients. It publishes ``cmd_vel`` only while the dead-man is held (and one zero when it is let go),
like ROS's teleop_twist_joy, so a planner's ``cmd_vel`` works whenever nobody holds the pad.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from functools import partial
from typing import Any

from geometry_msgs.msg import Twist
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from rclpy.task import Future
from sensor_msgs.msg import Joy
from std_srvs.srv import Trigger

from spot_policy.core.contract import TOPIC_CMD_VEL, TOPIC_JOY
from spot_policy.core.paths import config_dir
from spot_policy.core.teleop import ACTIONS, JoyMessageError, MappingError, Teleop, load_mapping
from spot_policy.ros.input_guard import InputGuard
from spot_policy.ros.node_main import run_node

NODE_NAME = "teleop"


class TeleopNode(Node):
    """Publishes cmd_vel at a fixed rate from the latest joy state; buttons call Trigger services."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        mapping_name = self._parameter(
            "mapping", "ps4", "file name in config/teleop (without .yaml) or path to a mapping YAML"
        )
        rate = self._parameter("publish_rate_hz", 50.0, "cmd_vel publish rate (Hz)")
        policy_node = self._parameter(
            "policy_node", "policy_node", "node whose stand/walk/stop Trigger services to call"
        )
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < math.inf:
            raise ValueError(f"parameter publish_rate_hz must be a number > 0, got {rate!r}")
        if not isinstance(policy_node, str) or not policy_node.strip("/"):
            raise ValueError(f"parameter policy_node must be a node name, got {policy_node!r}")
        if not isinstance(mapping_name, str):
            raise ValueError(f"parameter mapping must be a string, got {mapping_name!r}")

        mapping = load_mapping(mapping_name, config_dir() / "teleop")
        self._teleop = Teleop(mapping)
        self._joy_ok = False

        self._cmd_pub = self.create_publisher(Twist, TOPIC_CMD_VEL, 10)
        # joy_node publishes reliable; a best-effort (sensor data) subscription matches it and
        # never queues stale stick positions.
        # Read raw and deserialized here, so a payload that is no Joy is counted and reported
        # (spot_policy.ros.input_guard) instead of vanishing in the middleware.
        self.guard = InputGuard(self.get_logger().warning)
        self.create_subscription(Joy, TOPIC_JOY, self._on_joy_raw, qos_profile_sensor_data, raw=True)
        # Relative names resolve in teleop's namespace (like the policy node's own `~/stand`).
        base = policy_node.rstrip("/")
        self._trigger_clients = {a: self.create_client(Trigger, f"{base}/{a}") for a in ACTIONS}
        full = base if base.startswith("/") else f"{self.get_namespace().rstrip('/')}/{base}"
        self._trigger_names = {a: f"{full}/{a}" for a in ACTIONS}
        # A steady clock: the joystick is a wall-clock device, and with use_sim_time a paused or
        # absent /clock must not stop the zero commands (or the lost-joystick check).
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._cmd_timer = self.create_timer(1.0 / rate, self._on_timer, clock=steady)

        axes = ", ".join(
            f"{key} axis {a.index}{' inverted' if a.invert else ''} x{a.scale:g}" for key, a in mapping.axes.items()
        )
        buttons = ", ".join(f"{action} button {index}" for action, index in mapping.buttons.items())
        self.get_logger().info(
            f"mapping '{mapping.name}': {axes}; dead-man button {mapping.deadman}; {buttons}; "
            f"deadband {mapping.deadband:g}, joy timeout {mapping.joy_timeout:g} s; "
            f"cmd_vel at {float(rate):g} Hz; services {', '.join(self._trigger_names.values())}"
        )

    def _parameter(self, name: str, default: Any, description: str) -> Any:
        """Declare a read-only parameter; dynamic typing so `publish_rate_hz: 50` (an int) is accepted."""
        descriptor = ParameterDescriptor(description=description, read_only=True, dynamic_typing=True)
        return self.declare_parameter(name, default, descriptor).value

    def _on_joy_raw(self, data: bytes) -> None:
        msg = self.guard.read(TOPIC_JOY, lambda raw: deserialize_message(raw, Joy), data)
        if msg is not None:
            self._on_joy(msg)

    def _on_joy(self, msg: Joy) -> None:
        try:
            self._teleop.update(msg.axes, msg.buttons, time.monotonic())
        except JoyMessageError as exc:
            self.get_logger().error(f"{exc}; publishing zero cmd_vel", throttle_duration_sec=2.0)
            return
        for action in self._teleop.take_actions():
            self._call(action)

    def _on_timer(self) -> None:
        now = time.monotonic()
        fresh = self._teleop.is_fresh(now)
        if fresh != self._joy_ok:
            self._joy_ok = fresh
            if fresh:
                self.get_logger().info("joy: receiving messages")
            else:
                timeout = self._teleop.mapping.joy_timeout
                self.get_logger().warning(f"joy lost: no valid message for {timeout:g} s; cmd_vel is zero")
        was_driving = self._teleop.driving
        command = self._teleop.output(now)
        if command is not None:
            self._publish(*command)
        if self._teleop.driving != was_driving:
            what = "dead-man held: publishing cmd_vel" if self._teleop.driving else "dead-man released: cmd_vel zero"
            self.get_logger().info(what)

    def _publish(self, vx: float, vy: float, wz: float) -> None:
        msg = Twist()
        msg.linear.x = vx
        msg.linear.y = vy
        msg.angular.z = wz
        self._cmd_pub.publish(msg)

    def publish_zero(self) -> None:
        """One zero cmd_vel, so a consumer does not wait for its own timeout."""
        self._publish(0.0, 0.0, 0.0)

    def release(self) -> None:
        """At shutdown: one zero if teleop was driving (else it leaves other sources alone)."""
        if self._teleop.driving and self.context.ok():
            with contextlib.suppress(Exception):  # shutting down: best effort only
                self.publish_zero()
                self._cmd_pub.wait_for_all_acked(Duration(seconds=1.0))  # before the process goes

    def services_ready(self) -> dict[str, bool]:
        """Per action, whether its policy-node service is discovered (a press is ignored until then)."""
        return {action: client.service_is_ready() for action, client in self._trigger_clients.items()}

    def _call(self, action: str) -> None:
        client, name = self._trigger_clients[action], self._trigger_names[action]
        if not client.service_is_ready():
            self.get_logger().warning(f"{action}: service {name} not available; button press ignored")
            return
        self.get_logger().info(f"{action}: calling {name}")
        future = client.call_async(Trigger.Request())
        future.add_done_callback(partial(self._on_response, action, name))

    def _on_response(self, action: str, name: str, future: Future) -> None:
        error = future.exception()
        if error is not None:
            self.get_logger().error(f"{action}: {name} failed: {error}")
            return
        response = future.result()
        if response is None:
            self.get_logger().warning(f"{action}: {name} gave no response")
        elif response.success:
            self.get_logger().info(f"{action}: ok: {response.message}")
        else:
            self.get_logger().warning(f"{action}: refused: {response.message}")


def main(args: list[str] | None = None) -> int:
    """Entry point (``ros2 run spot_policy teleop``): a configuration error ends in one line, exit 2."""
    return run_node(NODE_NAME, TeleopNode, args, config_errors=(MappingError, ValueError), on_stop=TeleopNode.release)


if __name__ == "__main__":
    sys.exit(main())
