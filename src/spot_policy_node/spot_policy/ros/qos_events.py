"""QoS event handlers for the control loop's publishers and subscriptions: only the one that matters.

By default rclpy gives every publisher and subscription two event handlers (incompatible QoS and,
since Iron, incompatible type), and its executor rebuilds and polls each of them in Python on every
wake-up: 22 handlers cost the policy node ~0.1 ms per wake on this machine. The contract topics keep
an incompatible-QoS warning (a mismatch there silently stops the robot's data); internal streams get
none. Works with Humble's ``rclpy.qos_event`` and the ``rclpy.event_handler`` that replaced it.
"""

from __future__ import annotations

from collections.abc import Callable

try:
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks

Warn = Callable[[str], None]


def _incompatible(topic: str, side: str, warn: Warn) -> Callable[[object], None]:
    def report(event: object) -> None:
        policy = getattr(event, "last_policy_kind", "?")
        warn(
            f"{topic}: a {side} with incompatible QoS was discovered (last policy: {policy}); no data flows "
            f"between them; fix: use the QoS in DESIGN.md's topic contract on both sides"
        )

    return report


def contract_publisher(topic: str, warn: Warn) -> PublisherEventCallbacks:
    return PublisherEventCallbacks(
        incompatible_qos=_incompatible(topic, "subscription", warn), use_default_callbacks=False
    )


def contract_subscription(topic: str, warn: Warn) -> SubscriptionEventCallbacks:
    return SubscriptionEventCallbacks(
        incompatible_qos=_incompatible(topic, "publisher", warn), use_default_callbacks=False
    )


def internal_publisher() -> PublisherEventCallbacks:
    return PublisherEventCallbacks(use_default_callbacks=False)
