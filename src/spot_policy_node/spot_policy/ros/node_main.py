"""The ``main()`` every node shares: init, build, spin until Ctrl-C or SIGTERM, clean up.

A configuration error (bad parameter, a policy that cannot be loaded) ends the process with one
line on stderr and exit status 2, as a user of ``ros2 run`` expects, instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from spot_policy.core.errors import PolicyLoadError
from spot_policy.core.realtime_gc import freeze_startup_heap
from spot_policy.ros.hot_loop import HotLoop, hot_inputs_of

CONFIG_ERRORS: tuple[type[Exception], ...] = (PolicyLoadError, ValueError)


def run_node(
    name: str,
    make: Callable[[], Node],
    args: Sequence[str] | None = None,
    config_errors: tuple[type[Exception], ...] = CONFIG_ERRORS,
    make_executor: Callable[[Node], Executor] | None = None,
    until: Callable[[Node], bool] | None = None,
    exit_code: Callable[[Node], int] | None = None,
) -> int:
    """Run one node to the end; returns the process exit status.

    ``until``: spin only while it is false (a node that finishes by itself); ``exit_code``: the
    status such a node ends with. A node with hot inputs (:mod:`spot_policy.ros.hot_loop`) is spun by
    a :class:`~spot_policy.ros.hot_loop.HotLoop` around its executor.
    """
    rclpy.init(args=args)
    node: Node | None = None
    code = 0
    try:
        node = make()
        executor = make_executor(node) if make_executor else SingleThreadedExecutor()
        executor.add_node(node)
        freeze_startup_heap()
        hot = hot_inputs_of(node)
        if until is None and hot is not None:
            HotLoop(executor, hot).spin(node.context)
        elif until is None:
            executor.spin()
        else:
            while rclpy.ok() and not until(node):
                executor.spin_once(timeout_sec=0.1)
        code = exit_code(node) if exit_code else 0
    except config_errors as exc:
        what = "cannot load the policy: " if isinstance(exc, PolicyLoadError) else ""
        print(f"{name}: {what}{exc}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        code = 0
    except Exception:
        # Ctrl-C / SIGTERM can shut the context down under a busy callback; rclpy then raises an
        # RCLError from the executor. That is a normal shutdown; anything else is a real error.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code
