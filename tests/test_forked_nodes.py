"""Nodes forked from a preloading server (launcher.ForkedNodeProcess, what the evaluation uses)
behave as the executables do: same entry point, same exit status, same environment, same log,
same clean stop on SIGINT."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from std_srvs.srv import Trigger

from spot_policy.ros.bringup import policy_node, sim_nodes
from spot_policy_tools.launcher import (
    FORKABLE_MAINS,
    ComposedNodes,
    ForkedNodeProcess,
    NodeGroup,
    NodeProcess,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]


def _console_scripts() -> dict[str, str]:
    """name -> module of every console_scripts entry point in the packages' setup.py files."""
    out = {}
    for setup in ROOT.glob("src/*/setup.py"):
        for node in ast.walk(ast.parse(setup.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and " = " in node.value:
                name, _, target = node.value.partition(" = ")
                out[name.strip()] = target.split(":")[0].strip()
    return out


def test_forkable_mains_are_the_executables_entry_points() -> None:
    scripts = _console_scripts()
    for executable, module in FORKABLE_MAINS.items():
        assert scripts.get(executable) == module, f"{executable}: setup.py says {scripts.get(executable)}"
    from spot_policy_tools.composed_nodes import NODE_CLASSES

    assert set(NODE_CLASSES) == set(FORKABLE_MAINS)  # what ComposedNodes accepts, the process can build


@pytest.mark.parametrize("preloaded", [False, True], ids=["executable", "forked"])
def test_a_bad_policy_ends_with_the_same_status_and_log_line(tmp_path: Path, preloaded: bool) -> None:
    group = NodeGroup(tmp_path / "logs", preloaded=preloaded)
    proc = group.start(policy_node(str(tmp_path / "nowhere"), "input", True))
    assert isinstance(proc, ForkedNodeProcess if preloaded else NodeProcess)
    assert wait_for(lambda: proc.poll() is not None, 30.0)
    assert proc.poll() == 2
    assert "nowhere" in proc.tail(5)
    assert group.stop(together=True) == {"policy_node": 2}


def test_a_forked_node_serves_in_the_groups_domain_and_stops_cleanly_on_sigint(tmp_path: Path, ros_context) -> None:
    import rclpy

    group = NodeGroup(tmp_path / "logs", preloaded=True)  # the test's own domain (conftest)
    proc = group.start(policy_node("spot_flat_mjx", "input", True))
    from rclpy.executors import SingleThreadedExecutor

    node = rclpy.create_node("forked_probe", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    try:
        client = node.create_client(Trigger, "/policy_node/stand")
        end = time.monotonic() + 30.0
        while not client.service_is_ready() and time.monotonic() < end and proc.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        assert client.service_is_ready(), proc.tail(10)
    finally:
        executor.shutdown()
        node.destroy_node()
    codes = group.stop(together=True)
    assert codes == {"policy_node": 0}
    log = proc.log_path.read_text()
    assert "idle until ~/stand or ~/walk" in log and "stopped (SIGINT)" in log


def test_composed_nodes_serve_in_the_groups_domain_and_stop_cleanly_on_sigint(tmp_path: Path, ros_context) -> None:
    """The sim bridge and the policy node composed in one forked process (what a trial starts): both
    serve, under their own names and parameters, and both stop on one SIGINT; one log, each line
    naming its node."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    with pytest.raises(ValueError, match="only in a preloaded group"):
        NodeGroup(tmp_path / "plain").start(ComposedNodes(sim_nodes(realtime=False, teleop=False)))
    with pytest.raises(ValueError, match="cannot compose"):
        ComposedNodes(sim_nodes(realtime=False, teleop=True))  # teleop runs only as its own process
    group = NodeGroup(tmp_path / "logs", preloaded=True)  # the test's own domain (conftest)
    proc = group.start(ComposedNodes(sim_nodes(realtime=False, teleop=False)))
    node = rclpy.create_node("composed_probe", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    try:
        clients = [node.create_client(Trigger, "/policy_node/stand"), node.create_client(Trigger, "/sim_bridge/reset")]

        def up() -> bool:  # both services, and both nodes by name (ROS's graph information comes apart)
            names = {n for n, _ in node.get_node_names_and_namespaces()}
            return all(c.service_is_ready() for c in clients) and {"sim_bridge", "policy_node"} <= names

        end = time.monotonic() + 30.0
        while not up() and time.monotonic() < end and proc.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        assert up(), proc.tail(10)
    finally:
        executor.shutdown()
        node.destroy_node()
    assert group.stop(together=True) == {"nodes": 0}
    log = proc.log_path.read_text()
    assert "[sim_bridge]: mujoco lockstep" in log and "[policy_node]: policy " in log, log
    assert "sim_bridge+policy_node: stopped (SIGINT)" in log


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        ([], "no node named"),
        (["--ros-args"], "'--ros-args' before the first --node"),
        (["--node", "teleop"], "unknown node 'teleop'; use one of policy_node, sim_bridge"),
    ],
)
def test_composed_nodes_refuse_a_bad_command_line_with_one_line(argv: list[str], error: str, capsys) -> None:
    from spot_policy_tools import composed_nodes

    assert composed_nodes.main(["composed_nodes", *argv]) == 2
    assert (
        capsys.readouterr().err
        == f"composed_nodes: {error}" + ("" if "use one of" in error else f"; usage: {composed_nodes.USAGE}") + "\n"
    )


@pytest.mark.parametrize("executable", [*sorted(FORKABLE_MAINS), ComposedNodes.executable])
def test_the_fork_server_preload_leaves_a_forked_node_nothing_to_load(executable: str) -> None:
    """What node_preload does once (lazy imports, ROS type support, rclpy's caller lookup) is what a
    node's start-up would otherwise redo after every fork: after it, building the node as a trial
    does (or both nodes, composed in one process) imports no module. The preload initialises no ROS
    (the server must stay fork-safe), and it freezes its heap, so the node's own start-up collection
    walks only the little the node built."""
    probe = (
        "import gc, os, sys, importlib, rclpy\n"
        "import spot_policy_tools.node_preload\n"
        "frozen = gc.get_freeze_count()\n"
        "from spot_policy.ros import bringup, node_main\n"
        "from spot_policy_tools.launcher import ComposedNodes, main_module\n"
        "assert not rclpy.ok(), 'the preload must not initialise ROS'\n"
        "nodes = bringup.sim_nodes('spot_flat_mjx', realtime=False, teleop=False)\n"
        f"spec = next((s for s in nodes if s.executable == {executable!r}), ComposedNodes(nodes))\n"
        "before = set(sys.modules)\n"
        "def built():\n"
        "    print('walked', len(gc.get_objects()), 'of', len(gc.get_objects()) + frozen, flush=True)\n"
        "    print(sorted(set(sys.modules) - before), flush=True)\n"
        "    os._exit(0)\n"
        "node_main.freeze_startup_heap = built  # called once the node is built, before it spins\n"
        "importlib.import_module(main_module(spec)).main(spec.command())\n"
        "sys.exit('the node did not get built')\n"
    )
    done = run_probe(probe)
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "[]", done.stdout
    walked, total = (int(v) for v in lines[-2].split()[1::2])
    assert walked < total / 4, f"a collection in the node would walk {walked} of {total} objects"


def test_the_trial_preload_leaves_scoring_a_trial_nothing_to_load() -> None:
    """The fork server that runs trials imports TRIAL_MODULES; scoring a trial in a fork of it
    (the foot kinematics from Spot's MJCF, the report's trace with its np.median) then loads no
    module: what it used to load, numpy.ma, cost every trial 15-25 ms of CPU."""
    probe = (
        "import sys, importlib\n"
        "import numpy as np\n"
        "from spot_policy_tools.evaluate.trial import TRIAL_MODULES, trace\n"
        "for name in TRIAL_MODULES:\n"
        "    importlib.import_module(name)\n"
        "from spot_policy_tools.evaluate.trial_data import trial_data\n"
        "from spot_sim_bridge.core.terrain import TerrainSpec\n"
        "n = 50\n"
        "odom = np.zeros((n, 13)); odom[:, 2] = 0.45; odom[:, 6] = 1.0\n"
        "raw = {'t_ns': np.arange(n, dtype=np.int64) * 20_000_000, 'odom': odom, 'q': np.zeros((n, 12)),\n"
        "       'dq': np.zeros((n, 12)), 'tau': np.zeros((n, 12)), 'targets': np.zeros((n, 12)),\n"
        "       'policy_events': [], 'bridge_events': [], 'timing': {}}\n"
        "before = set(sys.modules)\n"
        "data, _ = trial_data(raw, TerrainSpec())\n"
        "trace(data, [], 0.0)\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    done = run_probe(probe)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def run_probe(probe: str, *args: str) -> subprocess.CompletedProcess:
    """``probe`` in a fresh Python (what a fork server or a worker starts from); it must exit 0."""
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_nodes_are_forked_from_here_only_where_that_is_safe() -> None:
    """A trial process forks its nodes from itself, which is safe only while it runs one thread and
    no ROS (a fork keeps only the calling thread: a lock another one held would stay held)."""
    probe = (
        "import threading, time\n"
        "from spot_policy.ros.bringup import policy_node\n"
        "from spot_policy_tools.launcher import ForkedNodeProcess, forks_safely_here\n"
        "assert forks_safely_here(), 'a fresh process runs one thread'\n"
        "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
        "assert not forks_safely_here()\n"
        "try:\n"
        "    ForkedNodeProcess(policy_node('spot_flat_mjx', 'input', True), None, {}, fork_here=True)\n"
        "except RuntimeError as exc:\n"
        "    print(exc)\n"
    )
    done = run_probe(probe)
    assert "cannot fork policy_node here: this process runs threads or ROS already" in done.stdout


def test_a_trial_process_that_dies_is_an_error_of_the_machinery(tmp_path: Path) -> None:
    """run_trial(isolated=True) runs each attempt in a fork; one that dies before it reports (here:
    its folder cannot be made) is retried like any machinery error, and reported, never raised."""
    probe = (
        "import dataclasses, json, sys\n"
        "from pathlib import Path\n"
        "from spot_policy.core import paths\n"
        "from spot_policy_tools.evaluate import runner\n"
        "from spot_policy_tools.evaluate.scenario import load_suite\n"
        "from spot_policy_tools.evaluate.trial import run_trial\n"
        "suite = load_suite(paths.config_dir() / 'scenarios' / 'quick.yaml')\n"
        "spec = runner.trial_specs(suite, [runner.policy_info('spot_flat_mjx', 'a')], Path(sys.argv[1]), False)[0]\n"
        "spec = dataclasses.replace(spec, out_dir=str(Path(sys.argv[1]) / 'a-file' / 'trial'))\n"
        "(Path(sys.argv[1]) / 'a-file').write_text('not a folder')\n"
        "print(json.dumps(run_trial(spec, isolated=True)))\n"
    )
    done = run_probe(probe, str(tmp_path))
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error"] == "the trial process exited with 1 before its result"
    assert result["attempts"] == 3 and len(result["retried_after"]) == 2
    assert "NotADirectoryError" in done.stderr  # the child's own traceback, on the worker's stderr
