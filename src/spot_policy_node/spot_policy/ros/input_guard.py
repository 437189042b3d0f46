"""Messages a node cannot read: counted, reported at most once a second, never raised.

The nodes read their hot inputs from raw bytes (``spot_policy.ros.cdr``), so a malformed payload
(truncated, random bytes, an absurd length, invalid text, another encoding that is no such
message) is this project's problem. A reader raises; the guard turns that into a count per input
(shown in diagnostics) and a log line at most once a second, and returns None. What a node does
about the message beyond that (the policy node faults when its mode needs the input) is its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
#: Log at most one line per input per this many seconds (monotonic).
LOG_PERIOD_S = 1.0


class InputGuard:
    def __init__(self, warn: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._warn = warn
        self._clock = clock
        self.counts: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def read(self, name: str, reader: Callable[[bytes], T], data: bytes) -> T | None:
        """``reader(data)``, or None (counted, reported) when it raises anything at all."""
        try:
            return reader(data)
        except Exception as exc:
            self.bad(name, str(exc) or type(exc).__name__)
            return None

    def bad(self, name: str, reason: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        now = self._clock()
        last = self._logged_at.get(name)
        if last is not None and now - last < LOG_PERIOD_S:
            self._unlogged[name] = self._unlogged.get(name, 0) + 1
            return
        self._logged_at[name] = now
        more = self._unlogged.pop(name, 0)
        also = f" (and {more} more since the last report)" if more else ""
        self._warn(f"{name}: ignored a message that cannot be read: {reason}{also}; {self.counts[name]} so far")

    def total(self) -> int:
        return sum(self.counts.values())
