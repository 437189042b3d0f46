"""Imported once by the fork server that starts evaluation nodes (:mod:`spot_policy_tools.launcher`):
does what every node would otherwise redo after each fork.

A node's start-up was 0.2-0.4 s of CPU, most of it not the node's own work: importing the MuJoCo
backend (the bridge imports its simulator lazily), loading each ROS interface's C type support
(rosidl's loader imports a grammar parser on first use), and the scan of every loaded module that
rclpy's logger makes through :func:`inspect.getframeinfo` on its first call. Done here, in the
server before it forks, each forked node finds them done. Nothing here initialises ROS or DDS: the
server must stay safe to fork (tests/test_forked_nodes.py checks that a forked node imports nothing).
Last, the server's heap is frozen out of garbage collection (:func:`gc.freeze`, as
:mod:`spot_policy.core.realtime_gc` does in each node): it is the bulk of every forked node's heap.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import linecache
import sys

from spot_policy_tools.launcher import FORKABLE_MAINS, ComposedNodes

#: Besides the nodes' modules: what they import lazily for the configuration evaluate runs, and the
#: ROS interface modules they (or rclpy, creating a node) use only inside functions.
LAZY_IMPORTS = ("spot_sim_bridge.backends.mujoco", "tf2_msgs.msg", "type_description_interfaces.srv")


def _interface_types() -> list[type]:
    """Every ROS message or service class some loaded module names (rosidl classes have a metaclass
    with ``__import_type_support__``)."""
    found: dict[int, type] = {}
    for module in list(sys.modules.values()):
        for value in list(getattr(module, "__dict__", {}).values()):
            if isinstance(value, type) and hasattr(type(value), "__import_type_support__"):
                found[id(value)] = value
    return list(found.values())


def warm() -> None:
    for name in (*FORKABLE_MAINS.values(), ComposedNodes.module, *LAZY_IMPORTS):
        try:
            importlib.import_module(name)
        except ImportError:  # an optional interface package: the node imports it itself, if ever
            continue
    for interface in _interface_types():
        try:
            type(interface).__import_type_support__()
        except Exception:  # a type without a C library here: the node reports it when it uses it
            continue
    inspect.getframeinfo(sys._getframe())  # fills inspect's file -> module map for all modules
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.endswith(".py") and module.__name__.startswith(("spot_", "rclpy")):
            linecache.getlines(path)  # the sources rclpy's logger reads to name the caller
    # Freeze the server's heap: a forked node's own collection (realtime_gc.freeze_startup_heap)
    # then walks only what the node built, 1 ms instead of 45-50 ms, and touches (so copies) none
    # of the server's pages.
    gc.collect()
    gc.freeze()


warm()
