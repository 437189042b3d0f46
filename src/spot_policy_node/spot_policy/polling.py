"""Taking messages without the executor: for high-rate inputs a node reads on its own schedule.

rclpy's executor wakes, rebuilds its wait set and runs a Python task for every message, about
0.1-0.4 ms each on this machine. A robot streams ~1000 state messages/s; a node that only needs
them at its own rate (the policy at 50 Hz, the recorder in batches) takes them itself instead.
"""

from __future__ import annotations

from rclpy.callback_groups import CallbackGroup
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
