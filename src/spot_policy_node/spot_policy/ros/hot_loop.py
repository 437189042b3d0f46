"""Spinning a node on a lock-stepped critical path: its hot input is waited on directly.

rclpy's executor answers every wake-up by rebuilding a wait set over all of the node's entities
(services, parameter services, timers, QoS events: ~30 for these nodes) and running a Python task,
0.1-0.3 ms each on the 2-core CI machine; with one message in and one out per control period
that overhead, twice per cycle, was most of the lockstep loop's time. A node whose work is driven
by one input (the policy node's input trigger, the sim bridge's lockstep) waits on that input's
subscriptions alone, handles them at once, and lets the executor catch up on everything else
(services, timers, ``cmd_vel``, ``/clock``) every ``housekeeping_s``.

The hot subscriptions belong to :class:`spot_policy.ros.polling.PolledGroup`, so the executor never
waits on them. A node offers its hot inputs through a ``hot_inputs()`` method (see
:func:`hot_inputs_of`); :func:`spot_policy.ros.node_main.run_node` spins such a node with
:class:`HotLoop`. Several nodes in one process (:func:`spot_policy.ros.node_main.run_nodes`) share
one loop: it waits on all their hot inputs at once, so a lock-stepped pair (the sim bridge and the
policy node of an evaluation trial) hands each message to the other within one thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rclpy.context import Context
from rclpy.executors import Executor, ExternalShutdownException, ShutdownException, TimeoutException
from rclpy.subscription import Subscription

from spot_policy.ros.polling import subscription_wait_set, wait_for_any

#: How often the executor catches up on the node's other entities (wall seconds).
HOUSEKEEPING_S = 0.005
#: At most this many executor callbacks per catch-up, so a flood of them cannot starve the hot path.
HOUSEKEEPING_MAX_CALLBACKS = 32


@dataclass(frozen=True)
class HotInputs:
    """What a node offers :class:`HotLoop`: the subscriptions to wait on and what to do when one is
    ready. ``on_ready`` may take other polled inputs too (that arrive just before the waited-on
    one): it also runs after each catch-up, so one that came late is never left waiting. ``due``:
    the monotonic time by which ``on_ready`` must run again even if nothing arrives (a lock-stepped
    bridge's wait for an answer that may never come); without it, the next catch-up."""

    subscriptions: Sequence[Subscription]
    on_ready: Callable[[], None]
    due: Callable[[], float] | None = None


def hot_inputs_of(node: object) -> HotInputs | None:
    """The node's hot inputs, or None when it has none (it then spins on the executor alone)."""
    offer = getattr(node, "hot_inputs", None)
    return offer() if callable(offer) else None


class HotLoop:
    """Wait on the subscriptions of ``hot`` (one node's, or several nodes' in one process) only; when
    one has data, call every ``on_ready`` (each takes its own inputs; one with nothing to take costs a
    few microseconds); run the executor's ready callbacks every ``housekeeping_s``. Returns when the
    context shuts down or after :meth:`stop`."""

    def __init__(
        self, executor: Executor, hot: HotInputs | Sequence[HotInputs], housekeeping_s: float = HOUSEKEEPING_S
    ) -> None:
        self.hots = (hot,) if isinstance(hot, HotInputs) else tuple(hot)
        if not self.hots or not all(h.subscriptions for h in self.hots):
            raise ValueError("HotLoop needs at least one subscription to wait on")
        self.executor = executor
        self.housekeeping_s = housekeeping_s
        self.wakeups = 0
        self.housekeeping_runs = 0
        self._stop_requested = False

    def stop(self) -> None:
        """Make :meth:`spin` return (from another thread) within one ``housekeeping_s``."""
        self._stop_requested = True

    def spin(self, context: Context) -> None:
        subscriptions = [s for hot in self.hots for s in hot.subscriptions]
        wait_set = subscription_wait_set(len(subscriptions), context)
        dues = [hot.due for hot in self.hots if hot.due is not None]
        next_housekeeping = 0.0
        while context.ok() and not self._stop_requested:
            now = time.monotonic()
            if now >= next_housekeeping:
                if not self._housekeeping() or not self._ready(context):
                    return
                next_housekeeping = now + self.housekeeping_s
            due = min(next_housekeeping, *(d() for d in dues)) if dues else next_housekeeping
            timeout_ns = max(0, int((due - time.monotonic()) * 1e9))
            try:
                ready = wait_for_any(wait_set, subscriptions, timeout_ns)
            except Exception:
                if context.ok() and not self._stop_requested:
                    raise
                return  # the node or the context went away while waiting
            if ready:
                self.wakeups += 1
            if (ready or due < next_housekeeping) and not self._ready(context):
                return  # (not ready: a deadline sooner than the catch-up; each on_ready acts on its own only)

    def _ready(self, context: Context) -> bool:
        """Every ``on_ready``; False when the context went away under one (its handles with it)."""
        try:
            for hot in self.hots:
                hot.on_ready()
        except Exception:
            if context.ok() and not self._stop_requested:
                raise
            return False
        return True

    def _housekeeping(self) -> bool:
        """Run what the executor has ready (services, timers, other topics); False once shut down."""
        self.housekeeping_runs += 1
        for _ in range(HOUSEKEEPING_MAX_CALLBACKS):
            try:
                handler, _entity, _node = self.executor.wait_for_ready_callbacks(timeout_sec=0)
            except TimeoutException:
                return True
            except (ShutdownException, ExternalShutdownException):
                return False
            handler()
            handler.result()  # re-raises what the callback raised
        return True
