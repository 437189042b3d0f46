"""The policy node over real rclpy and DDS: services, joint_command values/names/rate, every watchdog."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from std_msgs.msg import Float32MultiArray, Int64MultiArray

from spot_policy.core import contract
from spot_policy.core.onnx_mlp import mlp_forward, random_mlp
from spot_policy.ros.bringup import find_executable
from spot_policy.ros.policy_node import PolicyNode

from policy_fixtures import make_run
from ros_harness import BridgeHarness, Spinner, wait_until

pytestmark = pytest.mark.ros
DT = 0.02
LAYERS = random_mlp((48, 64, 12), seed=7, gain=0.5)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("logs"), layers=LAYERS)


@pytest.fixture(scope="module", autouse=True)
def ros() -> Iterator[None]:
    rclpy.init()
    yield
    rclpy.shutdown()


class Rig:
    """A policy node and a harness, spinning, discovered."""

    def __init__(self, run: Path, sim_time: bool = True, **params) -> None:
        overrides = [
            Parameter("policy", value=str(run)),
            Parameter("providers", value=["cpu"]),
            Parameter("soft_start_s", value=0.0),
            Parameter("stand_duration_s", value=0.2),
            Parameter("diagnostics_period_s", value=0.2),
            Parameter("use_sim_time", value=sim_time),
            *(Parameter(k, value=v) for k, v in params.items()),
        ]
        self.node = PolicyNode(parameter_overrides=overrides)
        self.h = BridgeHarness()
        self.spin = Spinner(self.node, self.h)
        self.spec = self.node.loaded.spec
        self.t = 0.0
        assert wait_until(
            lambda: (
                self.h.js_pub.get_subscription_count() >= 1
                and self.h.imu_pub.get_subscription_count() >= 1
                and self.node.command_pub.get_subscription_count() >= 1
                and (not sim_time or self.h.clock_pub.get_subscription_count() >= 1)
            ),
            timeout=10,
        ), "DDS discovery between the test and the policy node did not complete"

    def steps(self, n: int, q: np.ndarray | None = None, pause: float = 0.004, expect: bool = False, **kwargs) -> None:
        """Advance simulated time by n control periods, publishing state at each.

        ``expect``: the node is active, so wait for each period's command before the next tick (a
        loaded machine may otherwise deliver two clock ticks at once, and the timer fires once).
        """
        q = self.spec.default_joint_pos if q is None else q
        for _ in range(n):
            self.t = round(self.t + DT, 6)
            before = len(self.h.commands)
            self.h.publish_state(self.t, q, **kwargs)
            if expect:
                wait_until(lambda before=before: len(self.h.commands) > before, timeout=1.0, poll=0.001)
            else:
                time.sleep(pause)
        time.sleep(0.05)

    def close(self) -> None:
        self.spin.close()
        self.node.destroy_node()
        self.h.destroy_node()


@pytest.fixture
def rig(run: Path, request: pytest.FixtureRequest) -> Iterator[Rig]:
    r = Rig(run, **getattr(request, "param", {}))
    yield r
    r.close()


def positions(msgs) -> np.ndarray:
    return np.array([m.position for m in msgs])


def test_idle_stand_walk_values_names_and_rate(rig: Rig) -> None:
    spec, h = rig.spec, rig.h
    start = spec.default_joint_pos + 0.05
    rig.steps(5, start)
    assert h.take_commands() == []  # idle publishes nothing
    response = h.call("stand")
    assert response.success, response.message
    rig.steps(50, start, expect=True)
    stand = h.take_commands()
    # 50 Hz on the ROS clock: one command per 20 ms of simulated time.
    assert len(stand) == 50, len(stand)
    assert all(list(m.name) == list(contract.ISAAC_JOINT_ORDER) for m in stand)
    np.testing.assert_allclose(stand[-1].position, spec.default_joint_pos, atol=1e-9)
    assert all(list(m.velocity) == [0.0] * 12 and list(m.effort) == [0.0] * 12 for m in stand)

    h.send_cmd_vel(0.5, 0.1, -0.2)
    rig.steps(2)
    h.take_commands()
    assert h.call("walk").success
    rig.steps(1)
    first = h.take_commands()[0]
    obs = np.zeros(48, dtype=np.float32)
    obs[8] = -1.0  # projected gravity, level
    obs[9:12] = [0.5, 0.1, -0.2]
    expected = np.clip(spec.default_joint_pos + 0.2 * mlp_forward(LAYERS, obs), spec.joint_lower, spec.joint_upper)
    np.testing.assert_allclose(first.position, expected, atol=1e-5)
    rig.steps(20)
    walk = h.take_commands()
    assert len(walk) >= 19 and np.all(np.isfinite(positions(walk)))
    assert h.call("stop").success
    rig.steps(5)
    assert h.take_commands() == []


def test_names_follow_the_bridge(rig: Rig) -> None:
    urdf = [contract.urdf_name(j) for j in contract.SDK_JOINT_ORDER]
    rig.steps(3, names=urdf)
    assert rig.h.call("stand").success
    rig.steps(3, names=urdf)
    msgs = rig.h.take_commands()
    assert msgs and list(msgs[-1].name) == [contract.urdf_name(j) for j in contract.ISAAC_JOINT_ORDER]


@pytest.mark.parametrize("rig", [{"trigger": "input"}], indirect=True)
def test_input_trigger_one_command_per_joint_states(rig: Rig) -> None:
    rig.steps(3)
    assert rig.h.call("walk").success
    rig.steps(25, pause=0.01)
    assert len(rig.h.take_commands()) == 25


@pytest.mark.parametrize("missing", ["imu", "odom", "joint_states"])
def test_stale_input_faults_naming_it(rig: Rig, missing: str) -> None:
    topic = {"imu": "imu/data", "odom": "odom", "joint_states": "joint_states"}[missing]
    rig.steps(5)
    assert rig.h.call("walk").success
    rig.steps(5)
    rig.h.take_commands()
    rig.steps(6, **{missing: False})
    published = rig.h.take_commands()
    # Limit: 3 periods (60 ms). The step at +80 ms faults: at most 3 commands after the input stopped.
    assert len(published) <= 3, len(published)
    rig.steps(5, **{missing: False})
    assert rig.h.take_commands() == []
    assert wait_until(lambda: rig.h.diagnostics and rig.h.last_diagnostic()["mode"] == "fault", timeout=3)
    diag = rig.h.last_diagnostic()
    assert diag["level"] == b"\x02" or diag["level"] == 2
    assert diag["fault"].startswith(f"{topic} is stale")
    refused = rig.h.call("walk")
    assert not refused.success and "call reset first" in refused.message
    assert rig.h.call("reset").success
    rig.steps(3)
    assert rig.h.call("stand").success


def test_nan_faults_and_nothing_nan_is_published(rig: Rig) -> None:
    rig.steps(3)
    assert rig.h.call("walk").success
    rig.steps(5)
    q = rig.spec.default_joint_pos.copy()
    q[3] = np.nan
    rig.steps(3, q)
    rig.steps(5)
    msgs = rig.h.take_commands()
    assert np.all(np.isfinite(positions(msgs)))
    assert wait_until(lambda: rig.h.diagnostics and rig.h.last_diagnostic()["mode"] == "fault", timeout=3)
    assert "joint_states has NaN/inf position for hr_hx" in rig.h.last_diagnostic()["fault"]


def test_missing_joints_refuse_to_leave_idle(rig: Rig) -> None:
    names = [n for n in contract.SDK_JOINT_ORDER if n != "hl_kn"]
    rig.steps(3, names=names)
    response = rig.h.call("stand")
    assert not response.success and "joint_states lacks joints hl_kn" in response.message
    rig.steps(3, names=names)
    assert rig.h.take_commands() == []


@pytest.mark.parametrize("rig", [{"start_after_debug_readers": 1}], indirect=True)
def test_a_recorded_node_leaves_idle_only_once_its_debug_stream_is_read(rig: Rig) -> None:
    """start_after_debug_readers: stand and walk wait for the node's own writers to match a reader of
    ~/step, ~/observation and ~/action (what the graph lists can come before); then it stays met."""
    rig.steps(3)
    refused = rig.h.call("stand")
    assert not refused.success, refused.message
    assert "start_after_debug_readers" in refused.message and "~/step 0" in refused.message, refused.message
    assert rig.h.call("stop").success  # stopping is never held
    topics = {"step": Int64MultiArray, "observation": Float32MultiArray, "action": Float32MultiArray}
    readers = {n: rig.h.create_subscription(t, f"/policy_node/{n}", lambda _m: None, 100) for n, t in topics.items()}
    pubs = (rig.node.step_pub, rig.node.obs_pub, rig.node.action_pub)
    assert wait_until(lambda: all(p.get_subscription_count() >= 1 for p in pubs), timeout=10)
    rig.h.destroy_subscription(readers.pop("action"))
    assert wait_until(lambda: rig.node.action_pub.get_subscription_count() == 0, timeout=10)
    rig.steps(3)
    still = rig.h.call("stand")
    assert not still.success and "~/action 0" in still.message and "~/step 1" in still.message, still.message
    readers["action"] = rig.h.create_subscription(Float32MultiArray, "/policy_node/action", lambda _m: None, 100)
    assert wait_until(lambda: rig.node.action_pub.get_subscription_count() >= 1, timeout=10)
    rig.steps(3)
    assert rig.h.call("stand").success
    for reader in readers.values():  # the recorder goes away: the robot is not held idle again
        rig.h.destroy_subscription(reader)
    assert wait_until(lambda: all(p.get_subscription_count() == 0 for p in pubs), timeout=10)
    assert rig.h.call("stop").success
    rig.steps(3)
    assert rig.h.call("walk").success


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start_after_debug_readers": -1}, "start_after_debug_readers is -1; use 0 (none) or more"),
        ({"start_after_debug_readers": 1, "publish_debug": False}, "needs publish_debug: true"),
    ],
)
def test_start_after_debug_readers_refuses_bad_values(run: Path, params: dict, message: str) -> None:
    overrides = [Parameter("policy", value=str(run)), Parameter("providers", value=["cpu"])]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    with pytest.raises(ValueError, match=re.escape(message)):
        PolicyNode(parameter_overrides=overrides)


@pytest.mark.parametrize("rig", [{"trigger": "input"}], indirect=True)
def test_cmd_vel_under_sim_time_counts_from_the_newest_state_not_a_lagging_clock(rig: Rig) -> None:
    """A lock-stepped node reads /clock only now and then: states stamped ahead of it are the newest
    time it knows, and a cmd_vel that arrives after them is not older than they are."""
    rig.steps(3)
    assert rig.h.call("walk").success
    rig.t = 1.0 - DT
    rig.steps(1, clock=False)  # the clock stays at 0.06 s, the state says 1.0 s
    rig.h.send_cmd_vel(0.4, 0.0, 0.0)
    time.sleep(0.1)
    rig.steps(2, clock=False)
    controller = rig.node.controller
    assert controller.cmd_vel_fresh and controller.counters["cmd_vel_timeouts"] == 0
    np.testing.assert_allclose(controller.m.command, [0.4, 0.0, 0.0])


def test_command_clipping_and_cmd_vel_timeout_in_diagnostics(rig: Rig) -> None:
    rig.steps(3)
    rig.h.send_cmd_vel(10.0, 0.0, 0.0)
    assert rig.h.call("walk").success
    rig.steps(10)
    rig.steps(30)  # 0.6 s of simulated time without cmd_vel: past the 0.5 s timeout
    assert wait_until(
        lambda: rig.h.diagnostics and rig.h.last_diagnostic().get("cmd_vel_timeouts") == "1", timeout=3
    ), rig.h.last_diagnostic()
    diag = rig.h.last_diagnostic()
    assert diag["command_clips"] == "1" and diag["mode"] == "walk"
    assert float(diag["rate_hz.joint_states"]) > 0


@pytest.mark.parametrize("rig", [{"sim_time": False}], indirect=True)
def test_wall_clock_rate_without_sim_time(rig: Rig) -> None:
    def publish_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rig.h.publish_state(0.0, rig.spec.default_joint_pos, clock=False)
            time.sleep(0.005)

    publish_for(0.2)
    assert rig.h.call("stand").success
    publish_for(0.3)
    rig.h.take_commands()
    t0 = time.monotonic()
    publish_for(1.0)
    n = len(rig.h.take_commands())
    rate = n / (time.monotonic() - t0)
    assert 42 <= rate <= 56, rate


def test_entry_point_with_params_file(run: Path, ros_domain_id: int, tmp_path: Path) -> None:
    """The installed executable, the shipped parameter file, and a bad policy's one-line error."""
    exe = find_executable("spot_policy", "policy_node")
    assert exe is not None, "run scripts/setup"
    config = Path(__file__).resolve().parents[1] / "config" / "policy_node.yaml"
    env = dict(os.environ)
    bad = subprocess.run(
        [str(exe), "--ros-args", "--params-file", str(config), "-p", f"policy:={tmp_path / 'nope'}"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert bad.returncode == 2
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("policy_node: cannot load the policy: ") and "no such run folder" in lines[-1]

    proc = subprocess.Popen(
        [str(exe), "--ros-args", "--params-file", str(config), "-p", f"policy:={run}", "-p", "providers:=[cpu]"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        h = BridgeHarness()
        spin = Spinner(h)
        try:
            response = h.call("stand", timeout=20)
            assert not response.success and "joint_states never received" in response.message
        finally:
            spin.close()
            h.destroy_node()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "trigger=timer; idle until ~/stand or ~/walk" in out
