"""Taking messages without the executor: for high-rate inputs a node reads on its own schedule.

rclpy's executor wakes, rebuilds its wait set and runs a Python task for every message, about
0.1-0.4 ms each on this machine. A robot streams ~1000 state messages/s; a node that only needs
them at its own rate (the policy at 50 Hz, the recorder in batches) takes them itself instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack

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


def wait_for_any(wait_set: object, subscriptions: Sequence[Subscription], timeout_ns: int) -> bool:
    """Block until one of ``subscriptions`` has a message or ``timeout_ns`` passed; True if one has.
    Their handles are held while waiting, as rclpy's executor holds them: none is destroyed mid-wait."""
    with ExitStack() as in_use:
        wait_set.clear_entities()
        for subscription in subscriptions:
            in_use.enter_context(subscription.handle)
            wait_set.add_subscription(subscription.handle)
        wait_set.wait(timeout_ns)
        return bool(wait_set.get_ready_entities("subscription"))


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
            wait_for_any(self._wait_set, (self.subscription,), int(left * 1e9))
        return taken
