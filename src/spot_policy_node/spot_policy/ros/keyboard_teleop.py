"""``ros2 run spot_policy keyboard_teleop``: drive Spot from this terminal, no gamepad or ROS tools.

Keys (:mod:`spot_policy.core.keyboard`) step ``cmd_vel``, which goes out at ``publish_rate_hz``
(the command stays until changed); 1 / 2 / 3 call the policy node's stand / walk / stop. The
terminal shows the legend and one status line (mode and command). Quitting (Esc, Ctrl-C) sends a
zero command. ``spot-policy sim --teleop keyboard`` runs this in the foreground.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import threading
import tty
from typing import Any

import rclpy
from geometry_msgs.msg import Twist
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from std_srvs.srv import Trigger

from spot_policy.core.contract import TOPIC_CMD_VEL
from spot_policy.core.keyboard import ACTION_KEYS, LEGEND, KeyboardTeleop
from spot_policy.ros.node_parts import read_only

NODE_NAME = "keyboard_teleop"


class KeyboardTeleopNode(Node):
    """Publishes the keyboard's command at a steady rate and calls the mode services."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declared = self.declare_parameters(
            "",
            [
                ("publish_rate_hz", 20.0, read_only("cmd_vel rate (the command stays until a key changes it)")),
                ("policy_node", "policy_node", read_only("node whose stand/walk/stop the digits call")),
            ],
        )
        p = {param.name: param.value for param in declared}
        rate = float(p["publish_rate_hz"])
        if not rate > 0:
            raise ValueError(f"parameter publish_rate_hz must be > 0, got {rate}")
        self.keys = KeyboardTeleop()
        self.lock = threading.Lock()
        self.mode = "idle: press 1 to stand, 2 to walk"
        self._pub = self.create_publisher(Twist, TOPIC_CMD_VEL, 10)
        base = str(p["policy_node"]).rstrip("/")
        self._triggers = {a: self.create_client(Trigger, f"{base}/{a}") for a in ACTION_KEYS.values()}
        self.create_timer(1.0 / rate, self.publish, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def publish(self) -> None:
        with self.lock:
            vx, vy, wz = self.keys.velocity()
        msg = Twist()
        msg.linear.x, msg.linear.y, msg.angular.z = vx, vy, wz
        self._pub.publish(msg)

    def call(self, action: str) -> None:
        client = self._triggers[action]
        if not client.service_is_ready():
            self.mode = f"{action}: policy node not reachable yet"
            return
        self.mode = f"{action}..."
        future = client.call_async(Trigger.Request())

        def done(_: Any) -> None:
            result = future.result()
            self.mode = result.message if result is not None else f"{action}: no answer"

        future.add_done_callback(done)

    def zero(self, acked_within_s: float = 0.0) -> None:
        """A zero command; with ``acked_within_s``, wait (that long at most) until every reliable
        reader has it: the last word before exiting must not leave with the process."""
        with self.lock:
            self.keys.command = [0.0, 0.0, 0.0]
        self.publish()
        if acked_within_s > 0:
            self._pub.wait_for_all_acked(Duration(seconds=acked_within_s))


def _spin(executor: SingleThreadedExecutor) -> None:
    with contextlib.suppress(ExternalShutdownException):
        executor.spin()


def run(node: KeyboardTeleopNode, fd: int, out: Any) -> None:
    """The terminal loop: raw keys in, legend and status line out, until a quit key."""
    out.write(LEGEND + "\r\n")
    shown = ""
    while rclpy.ok():
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            data = os.read(fd, 64)
            if not data:
                break  # the terminal went away
            with node.lock:
                result = node.keys.feed(data.decode(errors="ignore"))
            for action in result.actions:
                node.call(action)
            if result.changed:
                node.publish()
            if result.quit:
                break
        with node.lock:
            line = node.keys.status(node.mode)
        if line != shown:
            out.write("\r" + line + "\x1b[K")
            out.flush()
            shown = line
    out.write("\r\n")


def _terminate(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def main(args: list[str] | None = None) -> int:
    fd = sys.stdin.fileno()
    if not os.isatty(fd):
        print(f"{NODE_NAME}: stdin is not a terminal; fix: run it in a terminal (or use --teleop gamepad)",
              file=sys.stderr)  # fmt: skip
        return 2
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)  # Ctrl-C is a key here
    signal.signal(signal.SIGTERM, _terminate)  # a launcher's stop: restore the terminal on the way out
    node: KeyboardTeleopNode | None = None
    executor = SingleThreadedExecutor()
    spinner = threading.Thread(target=_spin, args=(executor,), daemon=True)
    saved = termios.tcgetattr(fd)
    code = 0
    try:
        node = KeyboardTeleopNode()
        executor.add_node(node)
        spinner.start()
        tty.setraw(fd)
        run(node, fd, sys.stdout)
    except ValueError as exc:
        print(f"{NODE_NAME}: {exc}", file=sys.stderr)
        code = 2
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        if node is not None:
            node.zero(acked_within_s=1.0)  # the last word: stop moving (a recorder stopped next has it)
        # The executor's thread ends before the node and the context go (else rclpy aborts at exit).
        executor.shutdown(timeout_sec=2.0)
        if spinner.is_alive():
            spinner.join(timeout=2.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
