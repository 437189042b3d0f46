"""A Linux gamepad's evdev events -> ``sensor_msgs/Joy`` axes and buttons in joy_node's layout.

joy_node (the ROS ``joy`` package) reports a pad through SDL: sticks in [-1, 1] with up and left
positive, triggers +1 released to -1 pressed, the d-pad as two axes, buttons in SDL's order. The
PS4 and Xbox mappings in ``config/teleop/`` are written for that layout; this module produces the
same layout from the kernel's input events (``struct input_event``: type, code, value), so the
teleop node works unchanged without a ROS installation. No device I/O here: the ROS side
(:mod:`spot_policy.ros.gamepad_node`) reads the device; tests feed recorded event streams.

Event codes are the kernel's (``linux/input-event-codes.h``), as the drivers report them:
``hid-playstation`` (DualShock 4, DualSense) and ``xpad`` (Xbox 360/One/Series).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

EV_SYN, EV_KEY, EV_ABS = 0x00, 0x01, 0x03
ABS_X, ABS_Y, ABS_Z, ABS_RX, ABS_RY, ABS_RZ, ABS_HAT0X, ABS_HAT0Y = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x10, 0x11
BTN_SOUTH, BTN_EAST, BTN_NORTH, BTN_WEST = 0x130, 0x131, 0x133, 0x134
BTN_TL, BTN_TR, BTN_TL2, BTN_TR2 = 0x136, 0x137, 0x138, 0x139
BTN_SELECT, BTN_START, BTN_MODE, BTN_THUMBL, BTN_THUMBR = 0x13A, 0x13B, 0x13C, 0x13D, 0x13E

STICK, TRIGGER, HAT = "stick", "trigger", "hat"


@dataclass(frozen=True)
class PadLayout:
    """evdev code -> joy index for one controller family; axes with their kind."""

    name: str
    axes: Mapping[int, tuple[int, str]]
    buttons: Mapping[int, int]
    n_axes: int = 8
    n_buttons: int = field(default=0)

    def __post_init__(self) -> None:
        if not self.n_buttons:
            object.__setattr__(self, "n_buttons", max(self.buttons.values()) + 1)


_AXES = {
    ABS_X: (0, STICK), ABS_Y: (1, STICK), ABS_Z: (2, TRIGGER),
    ABS_RX: (3, STICK), ABS_RY: (4, STICK), ABS_RZ: (5, TRIGGER),
    ABS_HAT0X: (6, HAT), ABS_HAT0Y: (7, HAT),
}  # fmt: skip

#: Both pads report the face buttons and bumpers with the same codes, and joy_node numbers them 0..5.
_FACE_AND_BUMPERS = {BTN_SOUTH: 0, BTN_EAST: 1, BTN_NORTH: 2, BTN_WEST: 3, BTN_TL: 4, BTN_TR: 5}

LAYOUTS: dict[str, PadLayout] = {
    # hid-playstation: cross, circle, triangle (north), square (west), L1, R1, L2, R2, share,
    # options, PS, L3, R3 -> joy_node's 0..12 (config/teleop/ps4.yaml)
    "ps4": PadLayout(
        "ps4",
        _AXES,
        {
            **_FACE_AND_BUMPERS,
            BTN_TL2: 6,
            BTN_TR2: 7,
            BTN_SELECT: 8,
            BTN_START: 9,
            BTN_MODE: 10,
            BTN_THUMBL: 11,
            BTN_THUMBR: 12,
        },
    ),
    # xpad: A, B, X (reported as BTN_X = BTN_NORTH), Y (BTN_Y = BTN_WEST), LB, RB, back, start,
    # guide, left stick, right stick -> joy_node's 0..10 (config/teleop/xbox.yaml)
    "xbox": PadLayout(
        "xbox",
        _AXES,
        {
            **_FACE_AND_BUMPERS,
            BTN_SELECT: 6,
            BTN_START: 7,
            BTN_MODE: 8,
            BTN_THUMBL: 9,
            BTN_THUMBR: 10,
        },
    ),
}


def layout_for(device_name: str) -> str:
    """The controller family a device name suggests: ``xbox`` for Microsoft/Xbox pads, else ``ps4``."""
    return "xbox" if re.search(r"x-?box|microsoft|xinput", device_name, re.IGNORECASE) else "ps4"


@dataclass(frozen=True)
class AxisRange:
    """An absolute axis' range as the device reports it (``EVIOCGABS``: min, max, flat)."""

    minimum: int
    maximum: int
    flat: int = 0


class JoyState:
    """The pad's current axes and buttons in joy_node's layout, updated event by event.

    ``ranges``: the device's absolute axes (code -> range). A stick reads 0 at its centre and +1
    pushed up or left (joy_node negates SDL's values); a trigger +1 released, -1 pressed; the
    d-pad +1 left/up. Values are clipped to [-1, 1]; an axis the device lacks stays at rest.
    """

    def __init__(self, layout: PadLayout, ranges: Mapping[int, AxisRange]) -> None:
        self.layout = layout
        self.ranges = dict(ranges)
        self.axes = [0.0] * layout.n_axes
        self.buttons = [0] * layout.n_buttons
        for index, kind in layout.axes.values():
            if kind == TRIGGER:
                self.axes[index] = 1.0  # released

    def apply(self, kind: int, code: int, value: int) -> bool:
        """One event; True when it changed the state (EV_SYN and unknown codes change nothing)."""
        if kind == EV_KEY and code in self.layout.buttons:
            index = self.layout.buttons[code]
            pressed = 1 if value else 0  # 2 = autorepeat of a held key
            changed = self.buttons[index] != pressed
            self.buttons[index] = pressed
            return changed
        if kind == EV_ABS and code in self.layout.axes:
            index, axis_kind = self.layout.axes[code]
            new = self._normalize(code, axis_kind, value)
            changed = self.axes[index] != new
            self.axes[index] = new
            return changed
        return False

    def _normalize(self, code: int, kind: str, value: int) -> float:
        if kind == HAT:
            return float(-max(-1, min(1, value))) + 0.0
        span = self.ranges.get(code)
        if span is None or span.maximum <= span.minimum:
            return 0.0 if kind == STICK else 1.0
        fraction = (value - span.minimum) / (span.maximum - span.minimum)  # 0 .. 1
        if kind == TRIGGER:
            return max(-1.0, min(1.0, 1.0 - 2.0 * fraction))
        centred = 2.0 * fraction - 1.0
        centre = (span.maximum + span.minimum) / 2.0
        if abs(value - centre) <= span.flat:
            return 0.0  # the driver's own dead zone around the centre
        return max(-1.0, min(1.0, -centred)) + 0.0


_EVTEST_EVENT = re.compile(
    r"^Event: time [\d.]+, (?:type (\d+) \([^)]*\), code (\d+) \([^)]*\), value (-?\d+)|-+ SYN_REPORT)"
)
_EVTEST_NAME = re.compile(r'^Input device name: "(.*)"')
_EVTEST_CODE = re.compile(r"^\s+Event code (\d+) ")
_EVTEST_RANGE = re.compile(r"^\s+(Min|Max|Flat)\s+(-?\d+)")


@dataclass(frozen=True)
class EvtestRecording:
    """A pad recorded with ``evtest /dev/input/eventN > pad.log``: its name, axis ranges and events."""

    name: str
    ranges: dict[int, AxisRange]
    events: list[tuple[int, int, int]]


def parse_evtest(text: str) -> EvtestRecording:
    """Read ``evtest`` output: the header (device name, each absolute axis' Min/Max/Flat) and the
    events (type, code, value), SYN_REPORT as (EV_SYN, 0, 0)."""
    name, ranges, events = "", {}, []
    in_abs, code, values = False, None, {}
    for line in text.splitlines():
        if m := _EVTEST_EVENT.match(line):
            events.append((int(m[1]), int(m[2]), int(m[3])) if m[1] is not None else (EV_SYN, 0, 0))
        elif m := _EVTEST_NAME.match(line):
            name = m[1]
        elif line.strip().startswith("Event type"):
            in_abs = f"({'EV_ABS'})" in line
        elif in_abs and (m := _EVTEST_CODE.match(line)):
            code, values = int(m[1]), {}
        elif in_abs and code is not None and (m := _EVTEST_RANGE.match(line)):
            values[m[1]] = int(m[2])
            if {"Min", "Max"} <= values.keys():
                ranges[code] = AxisRange(values["Min"], values["Max"], values.get("Flat", 0))
    return EvtestRecording(name, ranges, events)


def replay(state: JoyState, events: Iterable[tuple[int, int, int]]) -> list[tuple[list[float], list[int]]]:
    """Apply ``events``; the (axes, buttons) at each EV_SYN that followed a change (one Joy each)."""
    frames: list[tuple[list[float], list[int]]] = []
    dirty = False
    for kind, code, value in events:
        if kind == EV_SYN:
            if dirty:
                frames.append((list(state.axes), list(state.buttons)))
            dirty = False
        elif state.apply(kind, code, value):
            dirty = True
    return frames
