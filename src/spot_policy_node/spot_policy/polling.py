"""Taking messages without the executor: for high-rate inputs a node reads on its own schedule.

rclpy's executor wakes, rebuilds its wait set and runs a Python task for every message, about
0.1-0.4 ms each on this machine. A robot streams ~1000 state messages/s; a node that only needs
them at its own rate (the policy at 50 Hz, the recorder in batches) takes them itself instead.
"""

from __future__ import annotations

import time

from rclpy.callback_groups import CallbackGroup
from rclpy.context import Context
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.subscription import Subscription


def take_raw(subscription: Subscription) -> tuple[bytes, dict] | None:
    """The subscription's next serialized message and its info (``received_timestamp``: system
    clock ns), or None. rclpy has no public take; this is the call its executors make (Humble
    through Kilted). Create the subscription with ``raw=True``."""
    with subscription.handle:
        return subscription.handle.take_message(subscription.msg_type, True)


class PolledGroup(CallbackGroup):
    """Entities the executor neither waits on nor runs: their owner takes their messages itself."""

    def can_execute(self, entity: object) -> bool:
        return False

    def beginning_execution(self, entity: object) -> bool:
        return False

    def ending_execution(self, entity: object) -> None:
        pass


def subscription_wait_set(count: int, context: Context) -> object:
    """A wait set for ``count`` subscriptions. ``rclpy_implementation.WaitSet`` is not public API,
    but it is what ``rclpy.wait_for_message`` uses, with this signature from Humble through Kilted."""
    return _rclpy.WaitSet(count, 0, 0, 0, 0, 0, context.handle)


class Waiter:
    """Wait for one polled subscription's next message in the calling thread (no executor, no
    thread hand-off): what a measuring harness needs to add nothing to what it measures."""

    def __init__(self, subscription: Subscription, context: Context) -> None:
        self.subscription = subscription
        self._wait_set = subscription_wait_set(1, context)

    def take(self, timeout_s: float) -> tuple[bytes, dict] | None:
        """The next message and its info, or None after ``timeout_s``."""
        end = time.monotonic() + timeout_s
        while (taken := take_raw(self.subscription)) is None:
            left = end - time.monotonic()
            if left <= 0:
                return None
            self._wait_set.clear_entities()
            self._wait_set.add_subscription(self.subscription.handle)
            self._wait_set.wait(int(left * 1e9))
        return taken
