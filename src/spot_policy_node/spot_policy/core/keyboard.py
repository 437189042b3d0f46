"""Driving Spot from a terminal: keys -> velocity command and mode actions (no ROS, no terminal I/O).

Each key press steps one velocity by a fixed amount (the command stays until changed, as with
teleop_twist_keyboard); digits switch the policy node's mode. The ROS side
(:mod:`spot_policy.ros.keyboard_teleop`) reads the terminal, publishes ``cmd_vel`` and calls the
services.
"""

from __future__ import annotations

from dataclasses import dataclass

Command = tuple[float, float, float]

#: Step per key press and the largest command (m/s, m/s, rad/s), those of the gamepad mappings.
STEP = (0.1, 0.1, 0.2)
LIMIT = (1.0, 0.5, 1.0)
#: Terminal escape sequences of the arrow keys -> the key they stand for.
ARROWS = {"\x1b[A": "w", "\x1b[B": "s", "\x1b[C": "e", "\x1b[D": "q", "\x1bOA": "w", "\x1bOB": "s", "\x1bOC": "e",
          "\x1bOD": "q"}  # fmt: skip
#: key -> (axis index, direction)
VELOCITY_KEYS = {"w": (0, 1), "s": (0, -1), "a": (1, 1), "d": (1, -1), "q": (2, 1), "e": (2, -1)}
ZERO_KEYS = (" ", "x")
ACTION_KEYS = {"1": "stand", "2": "walk", "3": "stop"}
QUIT_KEYS = ("\x03", "\x04", "\x1b")  # Ctrl-C, Ctrl-D, Esc alone

LEGEND = (
    "Spot keyboard teleop\r\n"
    "  w / s  (up / down arrow)     forward / back   vx  +/-0.1 m/s  (max 1.0)\r\n"
    "  a / d                        left / right     vy  +/-0.1 m/s  (max 0.5)\r\n"
    "  q / e  (left / right arrow)  turn left/right  wz  +/-0.2 rad/s (max 1.0)\r\n"
    "  space or x                   zero velocity (keeps walking in place)\r\n"
    "  1 stand   2 walk   3 stop (the policy node's modes)\r\n"
    "  Esc or Ctrl-C                quit (sends a zero command)\r\n"
)


@dataclass
class KeyResult:
    """What one chunk of input asked for."""

    actions: list[str]
    quit: bool = False
    changed: bool = False


class KeyboardTeleop:
    """The current command and the key handling; pure, so a test can type at it."""

    def __init__(self) -> None:
        self.command: list[float] = [0.0, 0.0, 0.0]
        self._pending = ""

    def feed(self, text: str) -> KeyResult:
        """Take typed characters (escape sequences may arrive split across calls)."""
        result = KeyResult(actions=[])
        buffer = self._pending + text
        self._pending = ""
        i = 0
        while i < len(buffer):
            char = buffer[i]
            if char == "\x1b":
                rest = buffer[i : i + 3]
                if rest in ARROWS:
                    self._key(ARROWS[rest], result)
                    i += 3
                    continue
                if rest in ("\x1b[", "\x1bO") and i + len(rest) == len(buffer):
                    self._pending = rest  # an arrow key cut in half: wait for the rest
                    break
                result.quit = True  # Esc on its own
                break
            self._key(char, result)
            if result.quit:
                break
            i += 1
        return result

    def _key(self, key: str, result: KeyResult) -> None:
        key_lower = key.lower()
        if key in QUIT_KEYS:
            result.quit = True
        elif key_lower in VELOCITY_KEYS:
            axis, direction = VELOCITY_KEYS[key_lower]
            value = round(self.command[axis] + direction * STEP[axis], 6)
            self.command[axis] = max(-LIMIT[axis], min(LIMIT[axis], value)) + 0.0
            result.changed = True
        elif key in ZERO_KEYS:
            self.command = [0.0, 0.0, 0.0]
            result.changed = True
        elif key in ACTION_KEYS:
            action = ACTION_KEYS[key]
            if action == "stop":
                self.command = [0.0, 0.0, 0.0]
                result.changed = True
            result.actions.append(action)

    def velocity(self) -> Command:
        vx, vy, wz = self.command
        return (vx, vy, wz)

    def status(self, mode: str) -> str:
        vx, vy, wz = self.command
        return f"mode {mode:<24} cmd_vel  vx {vx:+.1f} m/s  vy {vy:+.1f} m/s  wz {wz:+.1f} rad/s"
