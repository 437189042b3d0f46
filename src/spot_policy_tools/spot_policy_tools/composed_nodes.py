"""The sim bridge and the policy node in one process: how an evaluation trial runs them.

Lock-stepped, the two nodes answer each other once per control step. As two processes, each message
crossed Fast DDS's shared-memory transport and woke two threads on the other side (its transport's
listener, then the node's); composed (:func:`spot_policy.ros.node_main.run_nodes`), Fast DDS hands
each sample to the reader in the same process and one thread runs both nodes' hot inputs. Same node
classes, parameters, topics, QoS and DDS; the results of a trial are the same either way
(``spot-policy evaluate --separate-processes`` runs them apart; src/spot_policy_tools/test/test_evaluate.py
compares the two). On the robot the policy node runs alone, in its own process, as ever.

Started by :class:`spot_policy_tools.launcher.ComposedNodes` (a fork of the preloading server), with
``argv`` = ``composed_nodes --node EXECUTABLE --ros-args ... --node EXECUTABLE --ros-args ...``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from rclpy.node import Node

from spot_policy.ros.node_main import run_nodes
from spot_policy.ros.policy_node import PolicyNode
from spot_sim_bridge.ros.sim_bridge_node import SimBridgeNode

#: The nodes this process can compose, by executable name (launcher.FORKABLE_MAINS's keys).
NODE_CLASSES: dict[str, type[Node]] = {"policy_node": PolicyNode, "sim_bridge": SimBridgeNode}
USAGE = "composed_nodes --node sim_bridge --ros-args ... --node policy_node --ros-args ..."


def parse(argv: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``[(executable, its ROS arguments), ...]`` from ``argv``; ValueError naming what is wrong."""
    nodes: list[tuple[str, list[str]]] = []
    for word in argv[1:]:
        if word == "--node":
            nodes.append(("", []))
        elif not nodes:
            raise ValueError(f"'{word}' before the first --node; usage: {USAGE}")
        elif not nodes[-1][0]:
            if word not in NODE_CLASSES:
                raise ValueError(f"unknown node '{word}'; use one of {', '.join(sorted(NODE_CLASSES))}")
            nodes[-1] = (word, [])
        else:
            nodes[-1][1].append(word)
    if not nodes or not all(name for name, _ in nodes):
        raise ValueError(f"no node named; usage: {USAGE}")
    return nodes


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    try:
        nodes = parse(argv)
    except ValueError as exc:
        print(f"composed_nodes: {exc}", file=sys.stderr)
        return 2

    def maker(name: str, ros_args: list[str]) -> Callable[[], Node]:
        return lambda: NODE_CLASSES[name](cli_args=ros_args, use_global_arguments=False)

    return run_nodes("+".join(name for name, _ in nodes), [maker(n, a) for n, a in nodes], argv[:1])


if __name__ == "__main__":
    sys.exit(main())
