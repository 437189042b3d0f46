"""Velocity commands from a remote client (Foxglove's Teleop panel): checking them and holding them.

Foxglove's Teleop panel publishes ``geometry_msgs/Twist`` only while a button is held, at its own
rate (1 Hz by default), slower than the policy node's ``cmd_vel`` timeout. So the live view keeps
the client's newest command and republishes it at a steady rate while it is younger than a hold
time; after that (or when the client goes away) one zero command, then silence, and the policy
node's own timeout takes over. Time is any monotonic clock in seconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

Command = tuple[float, float, float]
ZERO: Command = (0.0, 0.0, 0.0)


class ClientCommandError(ValueError):
    """A client's command is unusable; the message says why (the command is dropped)."""


def twist_from_json(data: bytes | str) -> Command:
    """(vx, vy, wz) of a ``geometry_msgs/Twist`` in JSON (``{"linear": {"x": ..}, "angular": {"z": ..}}``);
    missing fields are zero."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClientCommandError(f"cmd_vel is not JSON: {exc}") from None
    if not isinstance(doc, Mapping):
        raise ClientCommandError("cmd_vel JSON must be an object with 'linear' and 'angular'")
    linear, angular = doc.get("linear", {}), doc.get("angular", {})
    if not isinstance(linear, Mapping) or not isinstance(angular, Mapping):
        raise ClientCommandError("cmd_vel JSON 'linear' and 'angular' must be objects with x, y, z")
    return checked((linear.get("x", 0.0), linear.get("y", 0.0), angular.get("z", 0.0)))


def checked(values: tuple[object, object, object]) -> Command:
    """Finite numbers only: a NaN or a string must never reach ``cmd_vel``."""
    out = []
    for name, value in zip(("linear.x", "linear.y", "angular.z"), values, strict=True):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ClientCommandError(f"cmd_vel {name} is {value!r}; it must be a finite number")
        out.append(float(value) + 0.0)
    return (out[0], out[1], out[2])


class CommandHold:
    """The newest client command, held for ``hold_s``; then one zero, then nothing."""

    def __init__(self, hold_s: float) -> None:
        if not (math.isfinite(hold_s) and hold_s > 0):
            raise ValueError(f"hold time must be a finite number of seconds > 0, got {hold_s}")
        self.hold_s = hold_s
        self._command: Command | None = None
        self._at = 0.0
        self._zero_due = False

    def update(self, command: Command, now: float) -> None:
        self._command, self._at, self._zero_due = command, now, True

    def release(self) -> None:
        """The client went away: the next :meth:`due` gives one zero."""
        if self._command is not None:
            self._command, self._zero_due = None, True

    def due(self, now: float) -> Command | None:
        """What to publish now: the held command, a final zero, or None (publish nothing)."""
        if self._command is not None and now - self._at <= self.hold_s:
            return self._command
        self._command = None
        if self._zero_due:
            self._zero_due = False
            return ZERO
        return None
