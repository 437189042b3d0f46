"""The repository as a colcon workspace: package manifests, colcon build, launch files, bring-up specs."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

from spot_policy.ros import bringup

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "spot_policy": "spot_policy_node",
    "spot_sim_bridge": "spot_sim_bridge",
    "spot_hw_bridge": "spot_hw_bridge",
    "spot_policy_tools": "spot_policy_tools",
}
#: Python import roots that are ROS packages (must be exec_depends when imported).
ROS_IMPORTS = {
    "rclpy",
    "builtin_interfaces",
    "std_msgs",
    "sensor_msgs",
    "geometry_msgs",
    "nav_msgs",
    "std_srvs",
    "diagnostic_msgs",
    "rosgraph_msgs",
    "rcl_interfaces",
    "ament_index_python",
    "launch",
    "launch_ros",
}


def optional_imports(tree: ast.AST) -> set[int]:
    """ids of import nodes inside ``try: ... except ImportError`` (optional integrations)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            imports = (n for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom)))
            found |= {id(n) for n in imports}
    return found


def imported_roots(package_dir: Path) -> set[str]:
    """Top-level modules the package's code imports unconditionally."""
    roots: set[str] = set()
    for path in package_dir.rglob("*.py"):
        if "test" in path.relative_to(package_dir).parts:
            continue
        tree = ast.parse(path.read_text())
        optional = optional_imports(tree)
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("name", list(PACKAGES))
def test_package_xml_is_format_3_and_lists_what_the_code_imports(name: str) -> None:
    folder = ROOT / "src" / PACKAGES[name]
    package = parse_package(str(folder / "package.xml"))
    assert package.package_format == 3 and package.name == name
    assert package.get_build_type() == "ament_python"
    declared = {d.name for d in package.exec_depends}
    code = folder / name
    used = imported_roots(code) & ROS_IMPORTS
    used |= {other for other in PACKAGES if other != name and other in imported_roots(code)}
    if name == "spot_policy":
        used |= {"launch", "launch_ros"}  # the launch files it installs
        used.discard("ament_index_python")  # optional: looked up when a ROS install has it
    assert used <= declared, f"{name}/package.xml lacks exec_depend {sorted(used - declared)}"


@pytest.mark.slow
def test_colcon_build_installs_launch_and_config(tmp_path: Path) -> None:
    colcon = Path(sys.executable).with_name("colcon")
    done = subprocess.run(
        [
            str(colcon),
            "--log-base",
            str(tmp_path / "log"),
            "build",
            "--base-paths",
            str(ROOT / "src"),
            "--build-base",
            str(tmp_path / "build"),
            "--install-base",
            str(tmp_path / "install"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 packages finished" in done.stdout
    share = tmp_path / "install" / "spot_policy" / "share" / "spot_policy"
    for rel in ("launch/sim.launch.py", "launch/teleop.launch.py", "config/policy_node.yaml", "config/teleop/ps4.yaml"):
        assert (share / rel).is_file(), rel
    shipped = sorted(p.relative_to(ROOT / "config") for p in (ROOT / "config").rglob("*") if p.is_file())
    installed = sorted(p.relative_to(share / "config") for p in (share / "config").rglob("*") if p.is_file())
    assert installed == shipped
    lib = tmp_path / "install" / "spot_policy" / "lib" / "spot_policy"
    for exe in ("policy_node", "teleop", "profile_player", "recorder"):
        assert (lib / exe).is_file(), f"ros2 run spot_policy {exe} would not find it"
    assert (tmp_path / "install" / "spot_sim_bridge" / "lib" / "spot_sim_bridge" / "sim_bridge").is_file()
    assert (tmp_path / "install" / "spot_hw_bridge" / "lib" / "spot_hw_bridge" / "hw_bridge").is_file()
    # The user's command is on PATH after `source install/setup.bash` (bin/, not lib/).
    assert (tmp_path / "install" / "spot_policy_tools" / "bin" / "spot-policy").is_file()


def test_launch_files_are_thin_and_use_the_bringup_specs() -> None:
    for path in sorted((ROOT / "launch").glob("*.launch.py")):
        tree = ast.parse(path.read_text())
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert "generate_launch_description" in functions, path
        assert "from spot_policy.ros import bringup" in path.read_text(), f"{path.name} must build nodes from bringup"
        assert len(path.read_text().splitlines()) < 80, f"{path.name} is not thin"


def dict_keys(path: Path, name: str) -> set[str]:
    """String keys of the module-level dict literal ``name`` (``**`` merges of BRINGUP_ARGUMENTS followed)."""
    tree = ast.parse(path.read_text())
    node = next(n.value for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign)) and (
        getattr(n, "target", None) or n.targets[0]).id == name)  # fmt: skip
    keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
    if any(k is None for k in node.keys):  # **launch_actions.BRINGUP_ARGUMENTS
        keys |= dict_keys(ROOT / "src/spot_policy_node/spot_policy/ros/launch_actions.py", "BRINGUP_ARGUMENTS")
    return keys


def test_launch_arguments_match_the_issues() -> None:
    sim = dict_keys(ROOT / "launch" / "sim.launch.py", "ARGUMENTS")
    assert {"policy", "backend", "realtime", "record", "gui", "joy", "teleop", "rviz"} <= sim, sim
    robot = dict_keys(ROOT / "launch" / "robot.launch.py", "ARGUMENTS")
    assert {"hostname", "policy", "port", "ca_cert", "joy", "teleop", "record", "rviz"} <= robot, robot


@pytest.mark.parametrize("realtime", [True, False])
def test_bringup_specs_resolve_to_real_executables_and_files(realtime: bool) -> None:
    specs = bringup.sim_nodes("spot_flat_mjx", realtime=realtime)
    names = [s.name for s in specs]
    assert names == ["sim_bridge", "policy_node", "teleop"]
    policy = next(s for s in specs if s.name == "policy_node")
    assert policy.overrides["trigger"] == ("timer" if realtime else "input")
    for spec in [*specs, bringup.profile_player("default"), bringup.recorder(Path("/tmp/bag"))]:
        argv = spec.command()
        assert Path(argv[0]).is_file() and shutil.which(argv[0])
        for path in spec.param_paths():
            assert path.is_file(), path
        assert f"__node:={spec.name}" in argv
