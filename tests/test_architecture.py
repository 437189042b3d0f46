"""The layer rule, checked on every module's imports: core <- ROS adapters <- tools, no cycles.

Layers (docs/ARCHITECTURE.md): a module in a ``ros`` folder is a ROS adapter, a module of
``spot_policy_tools`` is a tool, every other module of the three ROS packages is core. A module may
import its own layer and the layers below; a package may import only the packages below it
(spot_policy <- spot_sim_bridge <- spot_hw_bridge <- spot_policy_tools). Core modules import no
ROS client library or message package. Imports inside functions count (they run too); imports
under ``if TYPE_CHECKING:`` count for the layers, not for cycles (they never run).
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: package -> (source folder, rank): a package may import packages of lower or equal rank.
PACKAGES = {
    "spot_policy": (ROOT / "src" / "spot_policy_node", 0),
    "spot_sim_bridge": (ROOT / "src" / "spot_sim_bridge", 1),
    "spot_hw_bridge": (ROOT / "src" / "spot_hw_bridge", 2),
    "spot_policy_tools": (ROOT / "src" / "spot_policy_tools", 3),
}
LAYERS = ("core", "ros", "tools")
#: Import roots that are ROS itself: no core module may import them.
ROS_ROOTS = {"rclpy", "launch", "launch_ros", "rosidl_runtime_py", "rosbag2_py", "tf2_ros"}
ROS_SUFFIXES = ("_msgs", "_srvs", "_interfaces")


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (resolved to a module of ours where it is one)
    line: int
    runs: bool  # False under `if TYPE_CHECKING:`


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "spot_policy_tools":
        return "tools"
    return "ros" if "ros" in parts[1:] else "core"


def is_ros(root: str) -> bool:
    return root in ROS_ROOTS or root.endswith(ROS_SUFFIXES)


def modules(packages: dict[str, tuple[Path, int]]) -> dict[str, Path]:
    """Every module of the packages (tests excluded), by dotted name."""
    found: dict[str, Path] = {}
    for name, (folder, _) in packages.items():
        for path in sorted((folder / name).rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return hidden


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    hidden = _type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import mod` imports the module pkg.mod where it is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in dict.fromkeys(targets):
            found.append(Import(module, target, node.lineno, id(node) not in hidden))
    return found


def violations(packages: dict[str, tuple[Path, int]]) -> list[str]:
    """Every import that breaks the layer rule, and every import cycle, as readable lines."""
    mods = modules(packages)
    known = set(mods)
    rank = {name: r for name, (_, r) in packages.items()}
    problems: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        for imp in imports_of(module, path, known):
            root = imp.target.split(".")[0]
            where = f"{path.relative_to(packages[module.split('.')[0]][0])}:{imp.line}"
            if is_ros(root) and layer_of(module) == "core":
                problems.append(f"{where}: core module {module} imports ROS ({imp.target}); move it to a ros/ adapter")
            if root not in rank:
                continue
            target = imp.target
            if rank[root] > rank[module.split(".")[0]]:
                problems.append(f"{where}: {module} imports {target} from a package built on top of it")
            elif LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(module)):
                problems.append(
                    f"{where}: {layer_of(module)} module {module} imports {layer_of(target)} module {target} (upward)"
                )
            if imp.runs and target in graph and target != module:
                graph[module].add(target)
    problems += [f"import cycle: {' -> '.join([*cycle, cycle[0]])}" for cycle in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_product_follows_the_layer_rule() -> None:
    assert violations(PACKAGES) == []


def test_every_module_has_a_layer_the_tree_shows() -> None:
    """Core and adapters sit in folders named for their layer (or are the package's own files)."""
    for module in modules(PACKAGES):
        parts = module.split(".")
        if parts[0] == "spot_policy":
            assert len(parts) == 1 or parts[1] in ("core", "ros"), f"{module}: put it in spot_policy/core or /ros"


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, tuple[Path, int]]:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return {
        "spot_policy": (tmp_path / "a", 0),
        "spot_sim_bridge": (tmp_path / "b", 1),
        "spot_policy_tools": (tmp_path / "t", 3),
    }


BASE = {
    "a/spot_policy/__init__.py": "",
    "a/spot_policy/core/__init__.py": "",
    "a/spot_policy/core/contract.py": "JOINTS = 12\n",
    "a/spot_policy/ros/__init__.py": "",
    "a/spot_policy/ros/node.py": "import rclpy\nfrom spot_policy.core import contract\n",
    "b/spot_sim_bridge/__init__.py": "",
    "b/spot_sim_bridge/core/__init__.py": "",
    "b/spot_sim_bridge/core/bridge.py": "from spot_policy.core.contract import JOINTS\n",
    "t/spot_policy_tools/__init__.py": "",
    "t/spot_policy_tools/cli.py": "from spot_policy.ros import node\nfrom spot_sim_bridge.core import bridge\n",
}


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    assert violations(_tree(tmp_path, BASE)) == []


@pytest.mark.parametrize(
    ("rel", "text", "expected"),
    [
        ("a/spot_policy/core/bad.py", "import rclpy\n", "core module spot_policy.core.bad imports ROS (rclpy)"),
        (
            "a/spot_policy/core/bad.py",
            "def f():\n    from sensor_msgs.msg import JointState\n",
            "core module spot_policy.core.bad imports ROS (sensor_msgs.msg)",
        ),
        (
            "a/spot_policy/core/bad.py",
            "from spot_policy.ros import node\n",
            "core module spot_policy.core.bad imports ros module spot_policy.ros.node (upward)",
        ),
        (
            "a/spot_policy/ros/bad.py",
            "from spot_policy_tools import cli\n",
            "spot_policy.ros.bad imports spot_policy_tools.cli from a package built on top of it",
        ),
        (
            "a/spot_policy/core/bad.py",
            "from spot_sim_bridge.core import bridge\n",
            "spot_policy.core.bad imports spot_sim_bridge.core.bridge from a package built on top of it",
        ),
        (
            "a/spot_policy/core/contract.py",
            "from spot_policy.core import other\nJOINTS = 12\n",
            "import cycle: spot_policy.core.contract -> spot_policy.core.other -> spot_policy.core.contract",
        ),
    ],
)
def test_each_kind_of_violation_is_caught(tmp_path: Path, rel: str, text: str, expected: str) -> None:
    files = {**BASE, rel: text, "a/spot_policy/core/other.py": "from spot_policy.core import contract\n"}
    found = violations(_tree(tmp_path, files))
    assert any(expected in line for line in found), found


def test_a_type_checking_import_is_no_cycle(tmp_path: Path) -> None:
    files = {
        **BASE,
        "a/spot_policy/core/other.py": "from spot_policy.core import contract\n",
        "a/spot_policy/core/contract.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from spot_policy.core import other\n",
    }
    assert violations(_tree(tmp_path, files)) == []
