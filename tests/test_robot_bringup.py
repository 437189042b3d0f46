"""The robot bring-up: launch file, specs and parameter file, the same policy node as in simulation."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import yaml

from spot_policy.ros import bringup

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "robot.launch.py"
BRIDGE_NODE = ROOT / "src" / "spot_hw_bridge" / "spot_hw_bridge" / "ros" / "hw_bridge_node.py"


def test_robot_launch_is_thin_and_has_no_sim_switch() -> None:
    """Its arguments: tests/test_workspace.py::test_launch_arguments_match_the_issues."""
    text = LAUNCH.read_text()
    assert "bringup.robot_nodes(" in text and len(text.splitlines()) < 80
    tree = ast.parse(text)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
    }
    assert not {n for n in names if "sim" in n.lower()}, "no simulation switch in the robot launch"


def test_robot_specs_resolve_and_reuse_the_simulation_policy_node() -> None:
    specs = bringup.robot_nodes("spot_flat_mjx", "192.168.50.3", joy=True)
    assert [s.name for s in specs] == ["hw_bridge", "policy_node", "teleop", "joy_node"]
    bridge, policy = specs[0], specs[1]
    assert bridge.overrides["hostname"] == "192.168.50.3" and bridge.param_files == ("hw_bridge.yaml",)
    sim_policy = next(s for s in bringup.sim_nodes("spot_flat_mjx") if s.name == "policy_node")
    # The same executable, name and parameter file; only the trigger and the clock differ.
    assert (policy.package, policy.executable, policy.param_files) == (
        sim_policy.package,
        sim_policy.executable,
        sim_policy.param_files,
    )
    assert policy.overrides == {"policy": "spot_flat_mjx", "trigger": "timer", "use_sim_time": False}
    assert all(s.overrides.get("use_sim_time", False) is False for s in specs)
    for spec in specs[:3]:
        argv = spec.command()
        assert Path(argv[0]).is_file() and shutil.which(argv[0])
        assert all(path.is_file() for path in spec.param_paths())


def test_a_recorded_bring_up_starts_the_recorder_first_and_holds_the_policy_node_for_it() -> None:
    """What `spot-policy robot` starts: the node's first stand waits for the recorder (test_policy_node.py)."""
    specs = bringup.recorded(bringup.robot_nodes("spot_flat_mjx", teleop=True), Path("/tmp/bag"), sim_time=False)
    assert [s.name for s in specs] == ["recorder", "hw_bridge", "policy_node", "teleop"]
    assert specs[0].overrides["use_sim_time"] is False
    waiting = {s.name for s in specs if s.overrides.get("start_after_debug_readers") == 1}
    assert waiting == {"policy_node"}


def test_hw_bridge_yaml_sets_exactly_the_declared_parameters_and_no_credentials() -> None:
    params = yaml.safe_load((ROOT / "config" / "hw_bridge.yaml").read_text())["hw_bridge"]["ros__parameters"]
    source = BRIDGE_NODE.read_text()
    declared = set(re.findall(r'^\s+\("(\w+)", ', source, flags=re.MULTILINE))
    assert set(params) == declared
    assert not any("pass" in k or "user" in k or "cred" in k for k in params)
