"""The sim bridge's harness features over real rclpy and DDS: the lockstep barrier (~/run_until,
~/held), the ground truth beside the sensors' view, ~/events with the sim time of injected faults."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String

from spot_policy.core import contract
from spot_policy.core.onnx_mlp import random_mlp
from spot_sim_bridge.core import ground_truth
from spot_sim_bridge.ros.sim_bridge_node import SimBridgeNode

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "spot_policy_node" / "test"))
from policy_fixtures import make_run
from ros_harness import Spinner, wait_until

pytestmark = pytest.mark.ros
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
EVENTS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
DEEP = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module", autouse=True)
def ros() -> Iterator[None]:
    rclpy.init()
    yield
    rclpy.shutdown()


class Harness(Node):
    """Answers every joint_states with the default pose (a stand-in policy) and watches the rest."""

    def __init__(self) -> None:
        super().__init__("harness_probe")
        self.lock = threading.Lock()
        self.states: list[int] = []
        self.odom: dict[int, float] = {}
        self.truth: dict[int, float] = {}
        self.events: list[dict] = []
        self.held: list[int] = []
        self.command_pub = self.create_publisher(JointState, contract.TOPIC_JOINT_COMMAND, 10)
        self.run_until_pub = self.create_publisher(Clock, "/sim_bridge/run_until", LATCHED)
        sensor = QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.create_subscription(JointState, contract.TOPIC_JOINT_STATES, self._on_state, sensor)
        self.create_subscription(Odometry, contract.TOPIC_ODOM, self._on_odom, sensor)
        self.create_subscription(Odometry, "/sim_bridge/ground_truth/odom", self._on_truth, DEEP)
        self.create_subscription(String, "/sim_bridge/events", self._on_event, EVENTS)
        self.create_subscription(Clock, "/sim_bridge/held", self._on_held, LATCHED)

    @staticmethod
    def _ns(stamp) -> int:
        return stamp.sec * 1_000_000_000 + stamp.nanosec

    def _on_state(self, msg: JointState) -> None:
        with self.lock:
            self.states.append(self._ns(msg.header.stamp))
        out = JointState(name=list(contract.ISAAC_JOINT_ORDER))
        out.position = [0.1, -0.1, 0.1, -0.1, 0.9, 0.9, 1.1, 1.1, -1.5, -1.5, -1.5, -1.5]
        self.command_pub.publish(out)

    def _on_odom(self, msg: Odometry) -> None:
        with self.lock:
            self.odom[self._ns(msg.header.stamp)] = msg.twist.twist.linear.x

    def _on_truth(self, msg: Odometry) -> None:
        with self.lock:
            self.truth[self._ns(msg.header.stamp)] = msg.twist.twist.linear.x

    def _on_event(self, msg: String) -> None:
        with self.lock:
            self.events.append(json.loads(msg.data))

    def _on_held(self, msg: Clock) -> None:
        with self.lock:
            self.held.append(self._ns(msg.clock))

    def run_until(self, seconds: float) -> None:
        ns = round(seconds * 1e9)
        self.run_until_pub.publish(Clock(clock=rclpy.time.Time(nanoseconds=ns).to_msg()))


def harnessed_bridge(run: Path, **params: object) -> SimBridgeNode:
    """A lock-stepped bridge under a barrier with its ground truth on, and ``params``."""
    base = {"policy": str(run), "mode": "lockstep", "lockstep_wait_s": 0.02, "lockstep_barrier": True}
    overrides = {**base, "publish_ground_truth": True, **params}
    return SimBridgeNode(parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])


def test_barrier_ground_truth_and_events(tmp_path: Path) -> None:
    run = make_run(tmp_path, layers=random_mlp((48, 16, 12), seed=1, gain=0.1))
    bridge = harnessed_bridge(run, sense_noise_base_lin_vel=0.1, sense_seed=4, fault_nan_at_s=0.3)
    probe = Harness()
    spin = Spinner(bridge, probe)
    try:
        assert wait_until(lambda: bridge.state_out.joint_states_pub.get_subscription_count() >= 1, timeout=10)
        # Before any run_until the sim stays at 0 however long the harness waits (the start state
        # is republished, and the probe's answers are owed a step).
        assert wait_until(lambda: probe.held == [0], timeout=10), probe.held
        assert bridge.core.sim_time == 0.0
        # Released to 0.2 s: it runs there and holds, owed the next step.
        probe.run_until(0.2)
        assert wait_until(lambda: probe.held[-1:] == [200_000_000], timeout=10), probe.held
        spin_wait = threading.Event()
        spin_wait.wait(0.3)
        assert bridge.core.sim_time == pytest.approx(0.2)
        with probe.lock:
            stamps = sorted(set(probe.states))
        assert stamps == [round(i * 20e6) for i in range(11)]  # every instant once, none past the barrier
        # Released further: the NaN lands on the instant at 0.3 s, with an event at that sim time.
        probe.run_until(0.5)
        assert wait_until(lambda: probe.held[-1:] == [500_000_000], timeout=10)
        assert wait_until(lambda: any("fault injected: nan" in e["message"] for e in probe.events), timeout=5)
        fault = next(e for e in probe.events if "fault injected: nan" in e["message"])
        assert fault["t_ns"] == 300_000_000 and fault["level"] == "warn"
        # The sensors' view is noisy, the ground truth is the simulator's state.
        with probe.lock:
            common = sorted(set(probe.odom) & set(probe.truth))
            noisy = np.array([probe.odom[s] for s in common])
            truth = np.array([probe.truth[s] for s in common])
        assert len(common) > 10
        assert 0.0 < np.max(np.abs(noisy - truth)) <= 0.1 + 1e-9
    finally:
        spin.close()
        bridge.destroy_node()
        probe.destroy_node()


class TruthProbe(Harness):
    """The Harness's stand-in policy, recording the ground truth per instant or in batches."""

    def __init__(self) -> None:
        super().__init__()
        self.per_instant: dict[str, dict[int, np.ndarray]] = {"odom": {}, "joints": {}, "targets": {}}
        self.batches: list[np.ndarray] = []
        self.create_subscription(Odometry, "/sim_bridge/ground_truth/odom", self._on_truth_odom, DEEP)
        self.create_subscription(JointState, "/sim_bridge/ground_truth/joint_states", self._on_truth_joints, DEEP)
        self.create_subscription(JointState, "/sim_bridge/ground_truth/joint_targets", self._on_truth_targets, DEEP)
        self.create_subscription(Float64MultiArray, "/sim_bridge/ground_truth/batch", self._on_batch, DEEP)

    def _on_truth_odom(self, msg: Odometry) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        lin, ang = msg.twist.twist.linear, msg.twist.twist.angular
        values = [p.x, p.y, p.z, q.x, q.y, q.z, q.w, lin.x, lin.y, lin.z, ang.x, ang.y, ang.z]
        with self.lock:
            self.per_instant["odom"][self._ns(msg.header.stamp)] = np.array(values)

    def _on_truth_joints(self, msg: JointState) -> None:
        with self.lock:
            self.per_instant["joints"][self._ns(msg.header.stamp)] = np.concatenate(
                [msg.position, msg.velocity, msg.effort]
            )

    def _on_truth_targets(self, msg: JointState) -> None:
        with self.lock:
            self.per_instant["targets"][self._ns(msg.header.stamp)] = np.array(msg.position)

    def _on_batch(self, msg: Float64MultiArray) -> None:
        with self.lock:
            self.batches.append(np.array(msg.data))


def run_truth_probe(run: Path, batch: int) -> TruthProbe:
    """A lock-stepped bridge under a barrier, released to 0.3 s and then to 0.5 s."""
    bridge = harnessed_bridge(run, ground_truth_batch=batch, publish_tf=batch == 0)
    probe = TruthProbe()
    spin = Spinner(bridge, probe)
    try:
        assert (bridge.state_out.frames is None) == (batch > 0)  # no robot model, no /tf
        assert wait_until(lambda: bridge.state_out.joint_states_pub.get_subscription_count() >= 1, timeout=10)
        assert wait_until(lambda: probe.held == [0], timeout=10), probe.held
        for until in (0.3, 0.5):
            probe.run_until(until)
            assert wait_until(lambda u=until: probe.held[-1:] == [round(u * 1e9)], timeout=10), probe.held
            if batch:  # held: every instant up to here has been sent
                assert wait_until(
                    lambda u=until: any(ground_truth.split(b)["t_ns"][-1] == round(u * 1e9) for b in probe.batches),
                    timeout=5,
                )
        assert wait_until(lambda: bool(probe.batches) if batch else 500_000_000 in probe.per_instant["odom"], 5)
    finally:
        spin.close()
        bridge.destroy_node()
        probe.destroy_node()
    return probe


def test_batched_ground_truth_is_the_per_instant_ground_truth_bit_for_bit(tmp_path: Path) -> None:
    run = make_run(tmp_path, layers=random_mlp((48, 16, 12), seed=1, gain=0.1))
    single, batched = run_truth_probe(run, 0), run_truth_probe(run, 7)
    assert not (batched.per_instant["odom"] or batched.per_instant["joints"])  # batches instead
    assert not single.batches
    assert all(len(b) <= 7 * ground_truth.WIDTH for b in batched.batches)
    rows = ground_truth.split(np.concatenate(batched.batches))
    stamps = rows["t_ns"].tolist()
    assert sorted(set(stamps)) == [round(i * 20e6) for i in range(26)]  # 0 to 0.5 s, nothing past the barrier
    assert stamps == sorted(stamps)  # in order (the start state may repeat while the bridge waits)
    last = {s: i for i, s in enumerate(stamps)}  # a repeated instant: the latest row, as per instant
    for s, i in last.items():
        assert np.array_equal(rows["odom"][i], single.per_instant["odom"][s]), s
        joints = np.concatenate([rows["q"][i], rows["dq"][i], rows["tau"][i]])
        assert np.array_equal(joints, single.per_instant["joints"][s]), s  # this model's joints are in Isaac order
        if s in single.per_instant["targets"]:
            assert np.array_equal(rows["targets"][i], single.per_instant["targets"][s]), s
        else:  # no command yet at this instant
            assert np.isnan(rows["targets"][i]).all(), s
    assert len(single.per_instant["targets"]) > 20
