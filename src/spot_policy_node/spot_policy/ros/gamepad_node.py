"""``ros2 run spot_policy gamepad``: a Linux gamepad as ``sensor_msgs/Joy``, without the ``joy`` package.

Reads the pad's evdev device (python-evdev) and publishes ``joy`` in joy_node's layout
(:mod:`spot_policy.core.gamepad`), so the teleop node and its PS4/Xbox mappings work as with
joy_node: on every change, and repeated at ``autorepeat_rate`` Hz while nothing changes (a held
stick is not a lost joystick). A pad that goes away stops the messages (teleop's joy timeout then
zeroes the command) and the node says so.

Parameters: ``device`` (``/dev/input/eventN``; empty: the first device with sticks and buttons),
``layout`` (``ps4`` or ``xbox``; empty: from the device's name), ``autorepeat_rate``.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Any

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import Joy

from spot_policy.core.contract import TOPIC_JOY
from spot_policy.core.gamepad import ABS_X, BTN_SOUTH, EV_ABS, EV_KEY, EV_SYN, LAYOUTS, AxisRange, JoyState, layout_for
from spot_policy.ros.node_main import run_node
from spot_policy.ros.node_parts import read_only

NODE_NAME = "gamepad"
NO_GAMEPAD = (
    "no gamepad found (no readable /dev/input/event* device with sticks and buttons); fix: plug one in "
    "and check read access to /dev/input (group 'input'), or use --teleop keyboard"
)


class GamepadMissing(RuntimeError):
    """No usable gamepad: the message says what was looked for and what to do."""


@dataclass(frozen=True)
class Gamepad:
    path: str
    name: str
    layout: str


def find_gamepad(device: str = "", layout: str = "") -> Gamepad:
    """The pad to read: ``device`` if given, else the first evdev device with a stick and a south button."""
    import evdev

    if layout and layout not in LAYOUTS:
        raise ValueError(f"gamepad layout '{layout}' is unknown; use one of {', '.join(LAYOUTS)}")
    paths = [device] if device else sorted(evdev.list_devices())
    for path in paths:
        try:
            pad = evdev.InputDevice(path)
        except OSError as exc:
            if device:
                raise GamepadMissing(
                    f"cannot open {device}: {exc.strerror or exc}; fix: check the path and access"
                ) from None
            continue
        try:
            caps = pad.capabilities()
            if ABS_X in [c if isinstance(c, int) else c[0] for c in caps.get(EV_ABS, [])] and BTN_SOUTH in caps.get(
                EV_KEY, []
            ):
                return Gamepad(path, pad.name, layout or layout_for(pad.name))
        finally:
            pad.close()
        if device:
            raise GamepadMissing(f"{device} ({pad.name}) has no sticks and buttons: not a gamepad")
    raise GamepadMissing(NO_GAMEPAD)


class GamepadNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declared = self.declare_parameters(
            "",
            [
                ("device", "", read_only("evdev device, /dev/input/eventN; empty: the first gamepad found")),
                ("layout", "", read_only(f"button layout: {', '.join(LAYOUTS)}; empty: from the device name")),
                ("autorepeat_rate", 20.0, read_only("Hz: joy is repeated this often while nothing changes")),
            ],
        )
        p = {param.name: param.value for param in declared}
        rate = float(p["autorepeat_rate"])
        if not rate > 0:
            raise ValueError(f"parameter autorepeat_rate must be > 0, got {rate}")
        import evdev

        pad = find_gamepad(str(p["device"]), str(p["layout"]))
        self.device = evdev.InputDevice(pad.path)
        ranges = {
            code: AxisRange(info.min, info.max, info.flat)
            for code, info in self.device.capabilities(absinfo=True).get(EV_ABS, [])
        }
        self.state = JoyState(LAYOUTS[pad.layout], ranges)
        self._lock = threading.Lock()
        self._pub = self.create_publisher(Joy, TOPIC_JOY, 10)
        self._connected = True
        self.create_timer(1.0 / rate, self._repeat, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._reader = threading.Thread(target=self._read, name="gamepad_reader", daemon=True)
        self._reader.start()
        self.get_logger().info(f"gamepad: {pad.name} at {pad.path}, {pad.layout} layout; joy at {rate:g} Hz")

    def _read(self) -> None:
        """The reader thread: events -> state; a Joy on each report that changed something."""
        dirty = False
        try:
            for event in self.device.read_loop():
                with self._lock:
                    if event.type == EV_SYN:
                        if dirty:
                            self._publish()
                        dirty = False
                    elif self.state.apply(event.type, event.code, event.value):
                        dirty = True
        except OSError as exc:  # unplugged, out of range: a reader never raises out of its thread
            self._connected = False
            self.get_logger().error(f"gamepad lost ({exc.strerror or exc}): no more joy messages")

    def _repeat(self) -> None:
        if self._connected:
            with self._lock:
                self._publish()

    def _publish(self) -> None:
        msg = Joy(axes=list(self.state.axes), buttons=list(self.state.buttons))
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "gamepad"
        self._pub.publish(msg)

    def destroy_node(self) -> None:
        self._connected = False
        self.device.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(NODE_NAME, GamepadNode, args, config_errors=(ValueError, GamepadMissing))


if __name__ == "__main__":
    sys.exit(main())
