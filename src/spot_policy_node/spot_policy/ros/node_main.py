"""The ``main()`` every node shares: init, build, spin until Ctrl-C or SIGTERM, clean up.

A configuration error (bad parameter, a policy that cannot be loaded) ends the process with one
line on stderr and exit status 2, as a user of ``ros2 run`` expects, instead of a traceback.

Signals: rclpy's own handler is off. Its SIGINT shuts the context down at once (a node's last
words then fail to reach /rosout), and after ``rclpy.shutdown()`` a second SIGINT is a
``KeyboardInterrupt`` wherever the main thread is: ``ros2 launch`` sends one more while nodes shut
down, and a terminal's Ctrl-C signals every process of the group. Here SIGINT and SIGTERM only ask
for a stop (:class:`StopSignals`); the node then shuts down in its own order, and further signals
are counted, never raised, so a safe stop in progress (the robot bridge's stand and lease return)
is never cut short.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from spot_policy.core.errors import PolicyLoadError
from spot_policy.core.realtime_gc import freeze_startup_heap
from spot_policy.ros.hot_loop import HotLoop, hot_inputs_of

CONFIG_ERRORS: tuple[type[Exception], ...] = (PolicyLoadError, ValueError)
#: How long a blocked wait may hold off noticing a stop request (wall seconds).
STOP_POLL_S = 0.1


class StopSignals:
    """SIGINT and SIGTERM ask once for a clean stop; later ones are counted and never raise.

    Python runs the handler in the main thread between bytecodes; it only sets a flag and calls the
    registered ``on_stop`` callbacks (which must be quick and must not raise), so it can interrupt
    nothing half done.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.first: str | None = None
        self._on_stop: list[Callable[[], None]] = []

    #: A stop that has not ended after this long dumps every thread's stack to stderr (the node's
    #: log): where a shutdown hangs, even inside C code, where no Python handler can run.
    STUCK_AFTER_S = 8.0

    def install(self) -> StopSignals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)
        if not faulthandler.is_enabled():  # a native crash leaves its Python stack in the log too
            faulthandler.enable()
        return self

    @property
    def requested(self) -> bool:
        return self.count > 0

    def on_stop(self, callback: Callable[[], None]) -> None:
        self._on_stop.append(callback)
        if self.requested:
            callback()

    def ignore_from_now(self) -> None:
        """Once the node has shut down: ignore further signals. Python resets its own handlers to
        the default at interpreter exit, so a SIGINT in that last window (``ros2 launch`` sends
        one more while a process exits) would still kill it with status -2; an ignored signal
        is left ignored."""
        faulthandler.cancel_dump_traceback_later()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)

    def _handle(self, signum: int, _frame: object) -> None:
        self.count += 1
        what = signal.Signals(signum).name
        if self.count == 1:
            self.first = what
            faulthandler.dump_traceback_later(self.STUCK_AFTER_S, exit=False)
            for callback in self._on_stop:
                callback()
        else:
            sys.stderr.write(f"{self.name}: {what} again: already shutting down ({self.count} signals)\n")


def run_node(
    name: str,
    make: Callable[[], Node],
    args: Sequence[str] | None = None,
    config_errors: tuple[type[Exception], ...] = CONFIG_ERRORS,
    make_executor: Callable[[Node], Executor] | None = None,
    until: Callable[[Node], bool] | None = None,
    exit_code: Callable[[Node], int] | None = None,
    fatal_errors: tuple[type[Exception], ...] = (),
    on_start: Callable[[Node], None] | None = None,
    on_stop: Callable[[Node], None] | None = None,
) -> int:
    """Run one node to the end; returns the process exit status.

    ``until``: spin only while it is false (a node that finishes by itself); ``exit_code``: the
    status such a node ends with. ``config_errors`` end in exit status 2, ``fatal_errors`` in 1,
    each with one line. ``on_start`` runs once the node spins; ``on_stop`` before it is destroyed,
    whatever ended the run (its safe stop: signals arriving meanwhile cannot interrupt it). A node
    with hot inputs (:mod:`spot_policy.ros.hot_loop`) is spun by a
    :class:`~spot_policy.ros.hot_loop.HotLoop` around its executor.
    """
    return _run(name, (make,), args, config_errors, make_executor, until, exit_code, fatal_errors, on_start, on_stop)


def run_nodes(name: str, makes: Sequence[Callable[[], Node]], args: Sequence[str] | None = None) -> int:
    """Run several nodes in one process until stopped (ROS 2 composition: one context, one executor,
    one thread); returns the exit status as :func:`run_node` does. Their hot inputs share one
    :class:`~spot_policy.ros.hot_loop.HotLoop`, so a lock-stepped pair passes each message within the
    process (Fast DDS hands a sample to a reader of the same process directly, without its
    shared-memory transport and the two thread wake-ups per message that costs). Each node takes its
    ROS arguments from ``make`` (``cli_args``), not from ``args``."""
    return _run(name, tuple(makes), args, CONFIG_ERRORS, None, None, None, (), None, None)


def _run(
    name: str,
    makes: Sequence[Callable[[], Node]],
    args: Sequence[str] | None,
    config_errors: tuple[type[Exception], ...],
    make_executor: Callable[[Node], Executor] | None,
    until: Callable[[Node], bool] | None,
    exit_code: Callable[[Node], int] | None,
    fatal_errors: tuple[type[Exception], ...],
    on_start: Callable[[Node], None] | None,
    on_stop: Callable[[Node], None] | None,
) -> int:
    """:func:`run_node` for ``makes`` built in order (the hooks see the first node), destroyed in
    reverse order."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = StopSignals(name).install()
    nodes: list[Node] = []
    code = 0
    try:
        for make in makes:
            nodes.append(make())
        first = nodes[0]
        executor = make_executor(first) if make_executor else SingleThreadedExecutor()
        for node in nodes:
            executor.add_node(node)
        freeze_startup_heap()
        if on_start is not None:
            on_start(first)
        hot = [h for h in (hot_inputs_of(node) for node in nodes) if h is not None]
        if until is None and hot:
            loop = HotLoop(executor, hot)
            stop.on_stop(loop.stop)
            loop.spin(first.context)
        else:
            while rclpy.ok() and not stop.requested and not (until is not None and until(first)):
                executor.spin_once(timeout_sec=STOP_POLL_S)
        code = exit_code(first) if exit_code else 0
    except config_errors as exc:
        what = "cannot load the policy: " if isinstance(exc, PolicyLoadError) else ""
        print(f"{name}: {what}{exc}", file=sys.stderr)
        code = 2
    except fatal_errors as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        code = 0
    except Exception:
        # The context shut down under a busy callback (rclpy raises an RCLError from the executor):
        # a normal shutdown; anything else is a real error.
        if rclpy.ok():
            raise
    finally:
        for node in reversed(nodes):
            if on_stop is not None:
                on_stop(node)
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    stop.ignore_from_now()
    if stop.requested:
        print(f"{name}: stopped ({stop.first})", file=sys.stderr)
    return code
