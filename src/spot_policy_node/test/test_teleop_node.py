"""The teleop node over real DDS: joy in, cmd_vel out, Trigger services called on button presses.

One rclpy context per module: the teleop node (shipped ps4 mapping), a second teleop node in
namespace /lonely whose policy node does not exist, a fake policy node serving stand/walk/stop,
and a harness node (joy publisher at 50 Hz like joy_node's autorepeat, cmd_vel and /rosout
recorders) all spin on one executor in a background thread.

The executor is a SingleThreadedExecutor on purpose: rclpy's MultiThreadedExecutor (9.1.2 here,
and Humble's) re-yields tasks still queued in its thread pool, so its spin thread busy-loops and
holds the GIL (ros2/rclpy#1452, fixed by ros2/rclpy#1547). On 2 cores that starved the 50 Hz
timers to 6-40 Hz and faked joystick losses, i.e. flaky timing assertions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import rclpy
from geometry_msgs.msg import Twist
from rcl_interfaces.msg import Log
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Joy
from std_srvs.srv import Trigger

from spot_policy.core.paths import config_dir
from spot_policy.core.teleop import ACTIONS, apply_deadband, load_mapping
from spot_policy.ros.teleop_node import TeleopNode

pytestmark = pytest.mark.ros

PS4 = load_mapping("ps4", config_dir() / "teleop")
N_AXES, N_BUTTONS = 8, 13  # what joy_node reports for a DualShock 4


class Harness(Node):
    """Plays joy_node (publishes the current pad state at 50 Hz) and records cmd_vel and /rosout."""

    def __init__(self, context: Context) -> None:
        super().__init__("teleop_test_harness", context=context, start_parameter_services=False)
        self._lock = threading.Lock()
        self._axes = [0.0] * N_AXES
        self._buttons = [0] * N_BUTTONS
        self._publishing = True
        self.cmd: list[tuple[float, tuple[float, float, float]]] = []  # (receipt time, (vx, vy, wz))
        self.logs: list[Log] = []
        self.joy_pub = self.create_publisher(Joy, "joy", 10)  # joy_node: reliable, depth 10
        self.lonely_joy_pub = self.create_publisher(Joy, "/lonely/joy", 10)
        self.create_subscription(Twist, "cmd_vel", self._on_cmd, 100)
        rosout_qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Log, "/rosout", self._on_log, rosout_qos)
        self.create_timer(0.02, self._tick)

    def set_pad(
        self, *, lx: float = 0.0, ly: float = 0.0, rx: float = 0.0, deadman: bool = False, pressed: tuple[int, ...] = ()
    ) -> None:
        axes = [0.0] * N_AXES
        axes[PS4.vy.index], axes[PS4.vx.index], axes[PS4.wz.index] = lx, ly, rx
        buttons = [0] * N_BUTTONS
        buttons[PS4.deadman] = int(deadman)
        for index in pressed:
            buttons[index] = 1
        with self._lock:
            self._axes, self._buttons = axes, buttons

    def set_publishing(self, on: bool) -> None:
        with self._lock:
            self._publishing = on

    def _tick(self) -> None:
        with self._lock:
            if not self._publishing:
                return
            msg = self.pad_msg(self._axes, self._buttons)
        self.joy_pub.publish(msg)

    def pad_msg(self, axes: list[float], buttons: list[int]) -> Joy:
        msg = Joy()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.axes = [float(a) for a in axes]
        msg.buttons = list(buttons)
        return msg

    def _on_cmd(self, msg: Twist) -> None:
        with self._lock:
            self.cmd.append((time.monotonic(), (msg.linear.x, msg.linear.y, msg.angular.z)))

    def _on_log(self, msg: Log) -> None:
        with self._lock:
            self.logs.append(msg)

    def cmd_since(self, t: float) -> list[tuple[float, tuple[float, float, float]]]:
        with self._lock:
            return [c for c in self.cmd if c[0] >= t]

    def latest_cmd(self) -> tuple[float, float, float] | None:
        with self._lock:
            return self.cmd[-1][1] if self.cmd else None

    def log_texts(self, logger: str, level: int | None = None) -> list[str]:
        with self._lock:
            return [m.msg for m in self.logs if m.name == logger and (level is None or m.level == level)]


class FakePolicy(Node):
    """Serves ~/stand, ~/walk, ~/stop (std_srvs/Trigger) like the policy node, recording calls."""

    def __init__(self, context: Context) -> None:
        super().__init__("fake_policy", context=context, start_parameter_services=False)
        self._lock = threading.Lock()
        self._calls: list[str] = []
        for action in ACTIONS:
            self.create_service(Trigger, f"~/{action}", self._handler(action))

    def _handler(self, action: str) -> Callable[[Trigger.Request, Trigger.Response], Trigger.Response]:
        def handle(request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            with self._lock:
                self._calls.append(action)
            response.success = True
            response.message = f"{action} accepted"
            return response

        return handle

    @property
    def calls(self) -> list[str]:
        with self._lock:
            return list(self._calls)


@dataclass
class Ros:
    harness: Harness
    policy: FakePolicy
    teleop: TeleopNode
    lonely: TeleopNode


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def close(a: tuple[float, float, float] | None, b: tuple[float, float, float], tol: float = 1e-4) -> bool:
    return a is not None and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def ros() -> Iterator[Ros]:
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    nodes: list[Node] = []
    thread: threading.Thread | None = None
    try:
        harness = Harness(context)
        policy = FakePolicy(context)
        teleop = TeleopNode(
            context=context,
            parameter_overrides=[
                Parameter("mapping", value="ps4"),
                Parameter("policy_node", value="fake_policy"),
                Parameter("publish_rate_hz", value=50),  # an integer: accepted as well
            ],
        )
        lonely = TeleopNode(
            context=context,
            namespace="lonely",
            parameter_overrides=[Parameter("policy_node", value="absent_policy")],
        )
        nodes = [harness, policy, teleop, lonely]
        for node in nodes:
            executor.add_node(node)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        assert wait_for(lambda: harness.joy_pub.get_subscription_count() > 0), "teleop did not subscribe to joy"
        assert wait_for(lambda: harness.lonely_joy_pub.get_subscription_count() > 0)
        yield Ros(harness, policy, teleop, lonely)
    finally:
        executor.shutdown(timeout_sec=2.0)
        if thread is not None:
            thread.join(timeout=2.0)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def test_sticks_with_deadman_drive_cmd_vel(ros: Ros) -> None:
    h = ros.harness
    h.set_publishing(True)
    h.set_pad(ly=1.0, lx=0.5, rx=-1.0, deadman=True)
    expected = (PS4.vx.scale, apply_deadband(0.5, PS4.deadband) * PS4.vy.scale, -PS4.wz.scale)
    assert wait_for(lambda: close(h.latest_cmd(), expected)), f"cmd_vel {h.latest_cmd()} != {expected}"
    # Steady publishing at publish_rate_hz (50), loose bounds for a loaded 2-core machine.
    start = time.monotonic()
    time.sleep(0.5)
    n = len(h.cmd_since(start))
    assert 15 <= n <= 40, f"{n} cmd_vel messages in 0.5 s at 50 Hz"

    released = time.monotonic()
    h.set_pad(ly=1.0, lx=0.5, rx=-1.0, deadman=False)  # dead-man released: one zero, then nothing
    assert wait_for(lambda: close(h.latest_cmd(), (0.0, 0.0, 0.0), tol=0.0))
    time.sleep(0.3)
    after = [c for _, c in h.cmd_since(released) if c != expected]
    assert after == [(0.0, 0.0, 0.0)], after
    h.set_pad(ly=0.05, deadman=True)  # inside the deadband: held, so zeros
    time.sleep(0.1)
    assert h.latest_cmd() == (0.0, 0.0, 0.0)
    h.set_pad()


def test_nothing_is_published_without_the_deadman_so_a_planner_drives(ros: Ros) -> None:
    """The ROS habit (teleop_twist_joy): another cmd_vel source is not fought by a stream of zeros."""
    h = ros.harness
    h.set_publishing(True)
    h.set_pad(ly=1.0)  # sticks moved, dead-man not held
    time.sleep(0.2)
    start = time.monotonic()
    time.sleep(0.5)
    assert h.cmd_since(start) == []


def test_buttons_call_policy_services_once_per_press(ros: Ros) -> None:
    h, policy = ros.harness, ros.policy
    h.set_publishing(True)
    assert wait_for(lambda: all(ros.teleop.services_ready().values())), ros.teleop.services_ready()
    h.set_pad()
    time.sleep(0.1)
    before = len(policy.calls)
    pressed_at = time.monotonic()
    for action in ACTIONS:
        h.set_pad(pressed=(getattr(PS4, action),))
        time.sleep(0.15)  # held for several joy messages: still one call
        h.set_pad()
        time.sleep(0.06)
    assert wait_for(lambda: len(policy.calls) >= before + 3)
    time.sleep(0.1)
    assert policy.calls[before:] == ["stand", "walk", "stop"]
    # The node logs each response message.
    assert wait_for(lambda: "stop: ok: stop accepted" in h.log_texts("teleop"))
    # A button press alone does not move the robot.
    assert all(c == (0.0, 0.0, 0.0) for _, c in h.cmd_since(pressed_at)), h.cmd_since(pressed_at)


def test_lost_joy_gives_one_zero_cmd_vel_and_logs_once(ros: Ros) -> None:
    h = ros.harness
    h.set_publishing(True)
    h.set_pad(ly=1.0, deadman=True)
    assert wait_for(lambda: close(h.latest_cmd(), (PS4.vx.scale, 0.0, 0.0)))
    lost_before = len(h.log_texts("teleop", Log.WARN))

    h.set_publishing(False)  # the joystick goes silent
    stopped = time.monotonic()
    assert wait_for(lambda: h.latest_cmd() == (0.0, 0.0, 0.0), timeout=PS4.joy_timeout + 1.5)
    first_zero = next(t for t, c in h.cmd_since(stopped) if c == (0.0, 0.0, 0.0))
    assert PS4.joy_timeout - 0.15 <= first_zero - stopped <= PS4.joy_timeout + 0.5
    # One zero, then silence while joy is lost; the loss is logged once.
    time.sleep(0.3)
    assert [c for _, c in h.cmd_since(first_zero)] == [(0.0, 0.0, 0.0)]
    assert wait_for(lambda: len(h.log_texts("teleop", Log.WARN)) > lost_before)
    lost = [t for t in h.log_texts("teleop", Log.WARN)[lost_before:] if t.startswith("joy lost")]
    assert len(lost) == 1, lost

    h.set_publishing(True)  # back: the command follows the stick again, recovery logged
    assert wait_for(lambda: close(h.latest_cmd(), (PS4.vx.scale, 0.0, 0.0)))
    assert wait_for(lambda: h.log_texts("teleop", Log.INFO).count("joy: receiving messages") >= 2)
    h.set_pad()


def test_missing_policy_service_is_warned_not_fatal(ros: Ros) -> None:
    h = ros.harness
    assert not any(ros.lonely.services_ready().values())
    neutral = h.pad_msg([0.0] * N_AXES, [0] * N_BUTTONS)
    press = [0] * N_BUTTONS
    press[PS4.stop] = 1
    for msg in (neutral, neutral, h.pad_msg([0.0] * N_AXES, press)):
        h.lonely_joy_pub.publish(msg)
        time.sleep(0.03)
    expected = "stop: service /lonely/absent_policy/stop not available; button press ignored"
    assert wait_for(lambda: expected in h.log_texts("lonely.teleop", Log.WARN)), h.log_texts("lonely.teleop")
