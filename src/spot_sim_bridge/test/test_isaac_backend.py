"""The Isaac Sim backend's decisions that need no Isaac Sim: release and Python, Kit's start and
shutdown, the Spot USD, and the physics scene from a policy's env.yaml.

Isaac Sim is not installed here. Where a test stands in for ``SimulationApp`` it checks **our**
calls only (the argv Kit would see, the launch config we pass, the signal handlers we keep, the
order in which we close); it says nothing about what Isaac Sim does with them. What Isaac Sim does
is cited from its source in docs/ISAAC_SIM.md, not observed. Signal handling is checked with the
real rclpy, which is installed here.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest

from spot_sim_bridge.backends import isaac as isaac_backend
from spot_sim_bridge.backends import isaac_app, isaac_release, isaac_scene
from spot_sim_bridge.backends.isaac_release import IsaacSimInstall, unavailable_reason
from spot_sim_bridge.core.backend import BackendUnavailable
from spot_sim_bridge.core.bridge import make_backend

ROOT = Path(__file__).resolve().parents[3]
SHIPPED_ENV_YAML = ROOT / "config" / "policies" / "spot_flat_mjx" / "params" / "env.yaml"
EXECUTABLE = "/opt/venv/bin/python"

# --- which Isaac Sim, which Python ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("5.1.0", (5, 1, 0)),
        ("5.1.0.0", (5, 1, 0)),  # pip's four-part versions
        ("6.0.1-rc.7", (6, 0, 1)),  # the VERSION file of the v6.0.1 tag
        ("5.1.0-rc.19+release.123", (5, 1, 0)),
        ("6.2", (6, 2, 0)),
        ("not a version", None),
        ("", None),
    ],
)
def test_version_strings_are_parsed(text: str, numbers: tuple[int, int, int] | None) -> None:
    assert isaac_release.parse_version(text) == numbers


def installed(version: str | None) -> IsaacSimInstall:
    return IsaacSimInstall(version, "test")


@pytest.mark.parametrize(
    ("python", "found", "expected"),
    [
        (
            (3, 11, 7),
            None,
            "install Isaac Sim 5.x (it needs an NVIDIA RTX GPU): pip install 'isaacsim[all,extscache]"
            "==5.1.0' --extra-index-url https://pypi.nvidia.com",
        ),
        (
            (3, 12, 3),
            None,
            "install Isaac Sim 6.x (it needs an NVIDIA RTX GPU): pip install 'isaacsim[all,extscache]"
            "==6.0.1' --extra-index-url https://pypi.nvidia.com",
        ),
        ((3, 10, 12), None, "needs Isaac Sim 5.x on Python 3.11 or 6.x on Python 3.12; this is Python 3.10.12"),
        ((3, 11, 7), installed("4.5.0.0"), "supports Isaac Sim 5.x and 6.x but Python 3.11.7"),
        ((3, 11, 7), installed("6.0.1.0"), "Isaac Sim 6.0.1.0 runs on Python 3.12 only; this is Python 3.11.7"),
        ((3, 12, 3), installed("5.1.0.0"), "Isaac Sim 5.1.0.0 runs on Python 3.11 only; this is Python 3.12.3"),
        ((3, 11, 7), installed("5.1.0.0"), None),
        ((3, 11, 7), installed("5.0.0.0"), None),
        ((3, 12, 3), installed("6.0.1.0"), None),
        ((3, 12, 3), installed("6.2.0.0"), None),
        ((3, 12, 3), installed(None), None),  # a version nobody wrote down: Kit's start will tell
    ],
)
def test_release_and_python_are_checked_in_one_line(
    python: tuple[int, int, int], found: IsaacSimInstall | None, expected: str | None
) -> None:
    reason = unavailable_reason(python, found, executable=EXECUTABLE)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason
        assert "\n" not in reason and "docs/ISAAC_SIM.md" in reason


def test_releases_other_than_the_checked_ones_are_named() -> None:
    assert isaac_release.unchecked_release_note(installed("5.1.0.0")) is None
    assert isaac_release.unchecked_release_note(installed("6.0.1-rc.7")) is None
    note = isaac_release.unchecked_release_note(installed("6.2.0.0"))
    assert note is not None and "not 6.0.1" in note and "conformance suite" in note


def fake_isaacsim_package(folder: Path) -> Path:
    """An ``isaacsim`` package that fails the test if anything imports it."""
    package = folder / "isaacsim"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('isaacsim was imported')\n")
    return package


def test_pip_install_version_is_read_without_importing_isaacsim(tmp_path: Path, monkeypatch) -> None:
    fake_isaacsim_package(tmp_path)
    dist = tmp_path / "isaacsim-6.0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: isaacsim\nVersion: 6.0.1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = isaac_release.find_isaac_sim()
    assert found == IsaacSimInstall("6.0.1.0", "pip metadata")
    assert found.line is isaac_release.LINES[6] and "isaacsim" not in sys.modules


def test_binary_install_version_comes_from_its_version_file(tmp_path: Path, monkeypatch) -> None:
    # Isaac Sim's source tree: <root>/VERSION beside <root>/python_packages/isaacsim/__init__.py.
    fake_isaacsim_package(tmp_path / "isaac-sim" / "python_packages")
    (tmp_path / "isaac-sim" / "VERSION").write_text("5.1.0-rc.19\n")
    monkeypatch.syspath_prepend(str(tmp_path / "isaac-sim" / "python_packages"))
    monkeypatch.delenv("ISAAC_PATH", raising=False)
    found = isaac_release.find_isaac_sim()
    assert found is not None and found.version == "5.1.0-rc.19"
    assert found.found_by == str(tmp_path / "isaac-sim" / "VERSION") and found.numbers == (5, 1, 0)
    assert "isaacsim" not in sys.modules


def test_wrong_python_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "version_info", (3, 13, 1, "final", 0))
    reason = isaac_backend.isaac_unavailable_reason()
    assert reason is not None and "this is Python 3.13.1" in reason


@pytest.mark.skipif(isaac_backend.isaac_unavailable_reason() is None, reason="Isaac Sim is installed here")
def test_isaac_backend_fails_at_once_saying_what_to_install() -> None:
    started = time.perf_counter()
    with pytest.raises(BackendUnavailable) as refused:
        make_backend("isaac", 0.002)
    assert time.perf_counter() - started < 1.0
    message = str(refused.value)
    assert message == isaac_backend.isaac_unavailable_reason()
    assert "\n" not in message and isinstance(refused.value, ValueError)
    assert (
        "pip install 'isaacsim[all,extscache]==" in message and "--extra-index-url https://pypi.nvidia.com" in message
    )
    assert "isaacsim" not in sys.modules  # nothing was imported on the way


# --- Kit's command line, signal handlers and shutdown ------------------------------------------------


def test_kit_sees_the_program_name_only() -> None:
    ros = ["/ws/lib/spot_sim_bridge/sim_bridge", "--ros-args", "--params-file", "c.yaml", "-p", "backend:=isaac"]
    assert isaac_app.kit_argv(ros) == ["/ws/lib/spot_sim_bridge/sim_bridge"]
    assert isaac_app.kit_argv(["pytest", "-q", "-h", "src/x.py::test"]) == ["pytest"]
    assert isaac_app.kit_argv([]) == ["python"]


class StandInApp:
    """Stands in for ``SimulationApp`` to record our calls: argv at construction, config, close().

    Like ``SimulationApp`` (simulation_app.py L282 at v5.1.0) it installs a SIGINT handler with
    ``signal.signal`` that calls ``sys.exit(0)``; whether the real one does more is not tested here.
    """

    instances: ClassVar[list[StandInApp]] = []

    def __init__(self, launch_config: dict) -> None:
        self.argv_seen = list(sys.argv)
        self.config = dict(launch_config)
        self.closed = 0
        signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
        StandInApp.instances.append(self)

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def fresh_kit_state(monkeypatch: pytest.MonkeyPatch) -> list:
    """No app started yet in this process's view of ``isaac_app``; atexit registrations recorded, not made."""
    monkeypatch.setattr(isaac_app, "_app", None)
    monkeypatch.setattr(isaac_app, "_closed", False)
    registered: list = []
    monkeypatch.setattr(isaac_app.atexit, "register", registered.append)
    StandInApp.instances.clear()
    return registered


def test_app_starts_with_a_clean_argv_and_a_close_that_returns(fresh_kit_state: list, monkeypatch) -> None:
    argv = ["sim_bridge", "--ros-args", "-p", "backend:=isaac"]
    monkeypatch.setattr(sys, "argv", list(argv))
    sigint_before = signal.getsignal(signal.SIGINT)

    app = isaac_app.start_simulation_app(StandInApp, headless=True)

    assert app.argv_seen == ["sim_bridge"] and sys.argv == argv
    assert app.config == {"headless": True, "fast_shutdown": False}
    assert signal.getsignal(signal.SIGINT) is sigint_before  # the stand-in's sys.exit(0) handler is gone
    assert isaac_app.start_simulation_app(StandInApp, headless=True) is app and len(StandInApp.instances) == 1
    assert fresh_kit_state == [isaac_app.close_simulation_app]  # closed at interpreter exit

    isaac_app.close_simulation_app()
    isaac_app.close_simulation_app()
    assert app.closed == 1 and isaac_app.running_app() is None
    with pytest.raises(BackendUnavailable, match="cannot start twice"):
        isaac_app.start_simulation_app(StandInApp, headless=True)


def test_kit_that_exits_while_starting_becomes_backend_unavailable(fresh_kit_state: list, monkeypatch) -> None:
    class ExitingApp(StandInApp):
        def __init__(self, launch_config: dict) -> None:
            super().__init__(launch_config)
            raise SystemExit(1)  # what simulation_app.py does when Kit does not come up (v6.0.1 L580-582)

    monkeypatch.setattr(sys, "argv", ["sim_bridge", "--ros-args"])
    sigint_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(BackendUnavailable) as refused:
        isaac_app.start_simulation_app(ExitingApp, headless=True)
    message = str(refused.value)
    assert "status 1" in message and "OMNI_KIT_ACCEPT_EULA=YES" in message and "doctor --backend isaac" in message
    assert sys.argv == ["sim_bridge", "--ros-args"] and signal.getsignal(signal.SIGINT) is sigint_before
    assert isaac_app.running_app() is None and fresh_kit_state == []


CTRL_C_CHILD = """
import os, signal, sys, threading
import rclpy
from rclpy.executors import SingleThreadedExecutor
from spot_sim_bridge.backends import isaac_app

rclpy.init()
called = []
def kit_like_start():
    # What SimulationApp does after Kit starts (v5.1.0 simulation_app.py L272-282): a Python handler.
    signal.signal(signal.SIGINT, lambda *_: (called.append(1), sys.exit(0)))
if sys.argv[1] == "guarded":
    with isaac_app.preserved_signal_handlers():
        kit_like_start()
else:
    kit_like_start()
node = rclpy.create_node("ctrl_c_probe")
executor = SingleThreadedExecutor()
executor.add_node(node)
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
threading.Timer(float(sys.argv[2]), lambda: (print("executor still asleep", flush=True), os._exit(9))).start()
try:
    executor.spin()  # no timers: only rclpy's signal handling can wake it
except KeyboardInterrupt:
    print(f"KeyboardInterrupt kit_handler_called={bool(called)} rclpy_ok={rclpy.ok()}", flush=True)
    os._exit(0)
"""


def run_ctrl_c_child(mode: str, give_up_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CTRL_C_CHILD, mode, str(give_up_s)], capture_output=True, text=True, timeout=60
    )


def test_rclpy_ctrl_c_still_wakes_a_spinning_node_after_kit_like_start() -> None:
    guarded = run_ctrl_c_child("guarded", 20.0)
    assert guarded.returncode == 0, guarded.stdout + guarded.stderr
    assert "KeyboardInterrupt kit_handler_called=False rclpy_ok=False" in guarded.stdout
    # Without the guard the same Ctrl-C never reaches the spinning executor: rclpy's C-level handler
    # was replaced, so nothing wakes its wait (this is why the raw sigaction is restored).
    unguarded = run_ctrl_c_child("unguarded", 2.0)
    assert unguarded.returncode == 9 and "executor still asleep" in unguarded.stdout


EXIT_CHILD = """
import sys
from spot_sim_bridge.backends import isaac_app

class StandInApp:  # records our close() call only
    def __init__(self, config):
        print(f"started fast_shutdown={config['fast_shutdown']}", flush=True)
    def close(self):
        print("closed", flush=True)

isaac_app.start_simulation_app(StandInApp, headless=True)
print("main done", flush=True)
if sys.argv[1] == "raise":
    raise RuntimeError("a failing case")
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize(("how", "status"), [("0", 0), ("3", 3), ("raise", 1)])
def test_kit_is_closed_last_and_the_exit_status_is_kept(how: str, status: int) -> None:
    child = subprocess.run([sys.executable, "-c", EXIT_CHILD, how], capture_output=True, text=True, timeout=60)
    assert child.returncode == status, child.stderr
    assert child.stdout.split() == ["started", "fast_shutdown=False", "main", "done", "closed"]
    assert ("RuntimeError: a failing case" in child.stderr) == (how == "raise")


# --- the Spot USD -----------------------------------------------------------------------------------


def no_assets_root() -> str:
    raise AssertionError("get_assets_root_path() must not be asked when a USD path is given")


def test_usd_path_precedence_and_the_assets_root_only_without_a_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(isaac_backend.USD_PATH_ENV, raising=False)
    local = tmp_path / "spot.usd"
    local.write_text("#usda 1.0\n")
    root = "https://omniverse-content-production.s3-us-west-2.amazonaws.com/Assets/Isaac/5.1"
    assert isaac_backend.resolve_usd_path(str(local), no_assets_root) == str(local)
    assert (
        isaac_backend.resolve_usd_path("omniverse://nucleus/spot.usd", no_assets_root) == "omniverse://nucleus/spot.usd"
    )
    assert (
        isaac_backend.resolve_usd_path(None, lambda: root + "/") == root + "/Isaac/Robots/BostonDynamics/spot/spot.usd"
    )
    monkeypatch.setenv(isaac_backend.USD_PATH_ENV, str(local))
    assert isaac_backend.resolve_usd_path(None, no_assets_root) == str(local)
    assert isaac_backend.resolve_usd_path("omniverse://x/spot.usd", no_assets_root) == "omniverse://x/spot.usd"


def test_missing_local_usd_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable) as refused:
        isaac_backend.resolve_usd_path(str(tmp_path / "nowhere" / "spot.usd"), no_assets_root)
    message = str(refused.value)
    assert "does not exist" in message and "asset_path" in message and "\n" not in message


def test_unreachable_assets_root_is_backend_unavailable_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(isaac_backend.USD_PATH_ENV, raising=False)

    def unreachable() -> str:  # get_assets_root_path() raises this way (v5.1.0 nucleus.py:496)
        raise RuntimeError("Could not find assets root folder: https://example.invalid/Assets/Isaac/5.1")

    with pytest.raises(BackendUnavailable) as refused:
        isaac_backend.resolve_usd_path(None, unreachable)
    message = str(refused.value)
    assert "assets root is not reachable (Could not find assets root folder" in message
    assert "fix: set the bridge's asset_path parameter (or $SPOT_ISAAC_USD)" in message and "\n" not in message


# --- the physics scene from env.yaml --------------------------------------------------------------

ISAAC_LAB_LIKE_ENV_YAML = """\
sim:
  physics_prim_path: /physicsScene
  device: cuda:0
  dt: 0.002
  render_interval: 10
  gravity: !!python/tuple
  - 0.0
  - 0.0
  - -9.80665
  physx:
    solver_type: 0
    min_position_iteration_count: 1
    enable_ccd: true
    enable_stabilization: false
    bounce_threshold_velocity: 0.2
    friction_offset_threshold: 0.01
    friction_correlation_distance: 0.00625
    gpu_max_rigid_patch_count: 327680
  physics_material:
    func: isaaclab.sim.spawners.materials.physics_materials:spawn_rigid_body_material
    static_friction: 1.0
    dynamic_friction: 1.0
    friction_combine_mode: multiply
scene:
  robot:
    class_type: isaaclab.assets.articulation.articulation:Articulation
    spawn:
      func: isaaclab.sim.spawners.from_files.from_files:spawn_from_usd
      rigid_props:
        disable_gravity: false
        retain_accelerations: false
        linear_damping: 0.0
        angular_damping: null
        max_linear_velocity: 1000.0
        max_angular_velocity: 1000.0
        max_depenetration_velocity: 10.0
        max_contact_impulse: null
      articulation_props:
        enabled_self_collisions: false
        solver_position_iteration_count: 8
        solver_velocity_iteration_count: 1
        sleep_threshold: null
"""


def test_scene_settings_without_env_yaml_are_isaac_labs_spot_values() -> None:
    scene = isaac_scene.load_scene_settings(None)
    assert (scene.gravity_z, scene.solver_type, scene.enable_ccd, scene.enable_stabilization) == (
        -9.81,
        "TGS",
        False,
        False,
    )
    assert (scene.bounce_threshold_velocity, scene.friction_offset_threshold, scene.friction_correlation_distance) == (
        0.5,
        0.04,
        0.025,
    )
    assert scene.enabled_self_collisions is True
    assert (scene.solver_position_iteration_count, scene.solver_velocity_iteration_count) == (4, 0)
    assert dict(scene.rigid_body) == {
        "disableGravity": False,
        "retainAccelerations": False,
        "linearDamping": 0.0,
        "angularDamping": 0.0,
        "maxLinearVelocity": 1000.0,
        "maxAngularVelocity": 1000.0,
        "maxDepenetrationVelocity": 1.0,
    }
    assert set(scene.sources.values()) == {isaac_scene.DEFAULT}


def test_scene_settings_of_the_shipped_policy() -> None:
    """The shipped policy's env.yaml (trained in MJX) names gravity only: the rest is Isaac Lab's Spot."""
    scene = isaac_scene.load_scene_settings(SHIPPED_ENV_YAML)
    assert scene.gravity_z == -9.81 and scene.sources["gravity_z"] == "env.yaml sim.gravity"
    defaults = isaac_scene.load_scene_settings(None)
    assert {k: v for k, v in vars(scene).items() if k != "sources"} == {
        k: v for k, v in vars(defaults).items() if k != "sources"
    }
    assert {name for name, source in scene.sources.items() if source != isaac_scene.DEFAULT} == {"gravity_z"}


def test_scene_settings_come_from_an_isaac_lab_env_yaml(tmp_path: Path) -> None:
    env_yaml = tmp_path / "env.yaml"
    env_yaml.write_text(ISAAC_LAB_LIKE_ENV_YAML)
    scene = isaac_scene.load_scene_settings(env_yaml)
    assert scene.gravity_z == -9.80665 and scene.solver_type == "PGS"
    assert scene.enable_ccd is True and scene.enable_stabilization is False
    assert (scene.bounce_threshold_velocity, scene.friction_offset_threshold, scene.friction_correlation_distance) == (
        0.2,
        0.01,
        0.00625,
    )
    assert scene.enabled_self_collisions is False
    assert (scene.solver_position_iteration_count, scene.solver_velocity_iteration_count) == (8, 1)
    # angular_damping: null keeps the USD asset's own value (nothing is written)
    assert "angularDamping" not in scene.rigid_body
    assert scene.rigid_body["maxDepenetrationVelocity"] == 10.0 and scene.rigid_body["linearDamping"] == 0.0
    assert scene.sources["bounce_threshold_velocity"] == "env.yaml sim.physx.bounce_threshold_velocity"
    assert scene.sources["physxRigidBody:angularDamping"].endswith(": null, the USD asset's own value")
    assert scene.sources["physxRigidBody:maxDepenetrationVelocity"] == (
        "env.yaml scene.robot.spawn.rigid_props.max_depenetration_velocity"
    )
    described = scene.describe().splitlines()
    assert "enable_ccd = True (env.yaml sim.physx.enable_ccd)" in described


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (("    enable_ccd: true", "    enable_ccd: 'yes'"), "sim.physx.enable_ccd is 'yes'; fix: true or false"),
        (("    solver_type: 0", "    solver_type: 2"), "sim.physx.solver_type is 2; fix: 0 (PGS) or 1 (TGS)"),
        (
            ("    bounce_threshold_velocity: 0.2", "    bounce_threshold_velocity: -1.0"),
            "sim.physx.bounce_threshold_velocity is -1.0; fix: a finite number >= 0",
        ),
        (("  - 0.0\n  - 0.0\n  - -9.80665", "  - 1.0\n  - 0.0\n  - -9.80665"), "sim.gravity is (1.0, 0.0, -9.80665)"),
        (
            ("        solver_position_iteration_count: 8", "        solver_position_iteration_count: 4.5"),
            "solver_position_iteration_count is 4.5; fix: a whole number 0-255",
        ),
    ],
)
def test_bad_scene_values_are_named_with_the_file(tmp_path: Path, edit: tuple[str, str], named: str) -> None:
    env_yaml = tmp_path / "env.yaml"
    old, new = edit
    assert old in ISAAC_LAB_LIKE_ENV_YAML
    env_yaml.write_text(ISAAC_LAB_LIKE_ENV_YAML.replace(old, new))
    with pytest.raises(ValueError) as refused:
        isaac_scene.load_scene_settings(env_yaml)
    assert str(refused.value).startswith(f"{env_yaml}: ") and named in str(refused.value)


def test_the_backend_refuses_a_bad_env_yaml_before_starting_kit(tmp_path: Path) -> None:
    env_yaml = tmp_path / "env.yaml"
    env_yaml.write_text(ISAAC_LAB_LIKE_ENV_YAML.replace("    enable_ccd: true", "    enable_ccd: 3"))
    with pytest.raises(ValueError, match=r"sim\.physx\.enable_ccd is 3"):
        isaac_backend.IsaacSpot(env_yaml=env_yaml)
    assert isaac_app.running_app() is None and "isaacsim" not in sys.modules


def test_make_backend_hands_the_policys_env_yaml_to_the_isaac_backend(tmp_path: Path, monkeypatch) -> None:
    """Our wiring only: with the install check passed over, the env.yaml reaches IsaacSpot (which reads it
    before starting Kit, so its error shows it arrived)."""
    env_yaml = tmp_path / "env.yaml"
    env_yaml.write_text(ISAAC_LAB_LIKE_ENV_YAML.replace("    solver_type: 0", "    solver_type: 7"))
    monkeypatch.setattr(isaac_backend, "require_isaacsim", lambda: None)
    with pytest.raises(ValueError, match=r"solver_type is 7"):
        make_backend("isaac", 0.002, env_yaml=env_yaml)
    assert isaac_app.running_app() is None and "isaacsim" not in sys.modules


def test_an_off_centre_payload_is_refused_before_any_isaac_call() -> None:
    spot = object.__new__(isaac_backend.IsaacSpot)  # no Isaac Sim: the refusal comes before any attribute is used
    with pytest.raises(ValueError, match="off-centre payload is built by the mujoco backend only"):
        spot.set_payload(5.0, (0.1, 0.0, 0.0))


def test_an_unreadable_env_yaml_is_one_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "env.yaml"
    broken.write_text("sim: [unclosed\n")
    for path in (broken, tmp_path / "missing.yaml"):
        with pytest.raises(ValueError, match=r"cannot read it \(.+\); fix: the policy's params/env.yaml"):
            isaac_scene.load_scene_settings(path)
