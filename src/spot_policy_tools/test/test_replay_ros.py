"""Record and replay over real DDS: the policy node's debug stream, and a golden bag played back into
the real policy node (its inputs as recorded bytes, ``clock`` as recorded) with its joint_commands
checked against the recording.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Twist, Vector3
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Float32MultiArray, Int64MultiArray, String

from spot_policy.core import contract
from spot_policy.core.controller import ControllerConfig
from spot_policy.core.onnx_mlp import mlp_forward, random_mlp
from spot_policy.ros import debug_stream as debug
from spot_policy.ros.policy_node import PolicyNode
from spot_policy_tools.replay import InputSchedule, read_recording

from policy_fixtures import make_run
from ros_harness import BridgeHarness, Spinner, wait_until

pytestmark = pytest.mark.ros
GOLDEN = Path(__file__).resolve().parent / "golden"
LAYERS = random_mlp((48, 64, 12), seed=11, gain=0.5)


@pytest.fixture(scope="module", autouse=True)
def ros() -> Iterator[None]:
    rclpy.init()
    yield
    rclpy.shutdown()


class DebugListener(BridgeHarness):
    """The bridge harness, also subscribed to the policy node's debug stream."""

    def __init__(self) -> None:
        super().__init__()
        self.stream: dict[str, list[object]] = {"observation": [], "action": [], "step": [], "events": []}
        self._stream_lock = threading.Lock()
        deep = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=500, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        for name, msg_type, qos in (
            ("observation", Float32MultiArray, deep),
            ("action", Float32MultiArray, deep),
            ("step", Int64MultiArray, deep),
            ("events", String, latched),
        ):
            self.create_subscription(msg_type, f"/policy_node/{name}", lambda m, n=name: self._keep(n, m), qos)

    def _keep(self, name: str, msg: object) -> None:
        with self._stream_lock:
            self.stream[name].append(msg)


def test_debug_stream_says_what_each_step_saw(tmp_path: Path) -> None:
    run = make_run(tmp_path, layers=LAYERS)
    node = PolicyNode(
        parameter_overrides=[
            Parameter("policy", value=str(run)),
            Parameter("providers", value=["cpu"]),
            Parameter("trigger", value="input"),
            Parameter("soft_start_s", value=0.0),
            Parameter("stand_duration_s", value=0.1),
            Parameter("use_sim_time", value=True),
        ]
    )
    h = DebugListener()
    spin = Spinner(node, h)
    try:
        assert wait_until(
            lambda: h.js_pub.get_subscription_count() >= 1 and node.step_pub.get_subscription_count() >= 1, 10
        )
        spec = node.loaded.spec
        t = 10.0
        for _ in range(3):
            t = round(t + 0.02, 6)
            h.publish_state(t, spec.default_joint_pos)
            time.sleep(0.01)
        assert h.call("stand").success
        h.send_cmd_vel(0.5, 0.0, 0.2)
        assert wait_until(lambda: node.controller.input_counts["cmd_vel"] == 1)
        for i in range(13):
            if i == 8:
                assert h.call("walk").success
            t = round(t + 0.02, 6)
            h.publish_state(t, spec.default_joint_pos + (0.01 if i < 8 else 0.02))
            assert wait_until(lambda n=i + 1: len(h.commands) == n and len(h.stream["step"]) == n, 2), i
        assert wait_until(lambda: len(h.stream["action"]) == 5 and len(h.stream["observation"]) == 5, 2)
    finally:
        spin.close()

    commands = h.take_commands()
    events = [json.loads(m.data) for m in h.stream["events"]]
    steps = [list(m.data) for m in h.stream["step"]]
    start = events[0]
    assert start["event"] == "start" and start["seq"] == 0 and start["trigger"] == "input"
    assert start["onnx_sha256"] == hashlib.sha256((run / "exported" / "policy.onnx").read_bytes()).hexdigest()
    # The whole controller config, so a replay builds the same controller (the node's defaults but these).
    assert start["config"] == asdict(
        ControllerConfig(stand_duration_s=0.1, soft_start_s=0.0, input_timeout_s=None, cmd_vel_timeout_s=0.5)
    )
    assert start["obs_terms"][0] == ["base_lin_vel", "base_lin_vel", 0, 3] and start["obs_terms"][-1][3] == 48
    assert start["action_joints"] == list(contract.ISAAC_JOINT_ORDER)
    assert start["step_fields"] == list(debug.STEP_FIELDS)
    requests = [e for e in events if e["event"] == "request"]
    assert [(e["requested"], e["accepted"], e["mode"], e["op"]) for e in requests] == [
        ("stand", True, "stand", "service"),
        ("walk", True, "walk", "service"),
    ]
    assert requests[0]["inputs"]["joint_states"][0] == 3 and requests[0]["inputs"]["cmd_vel"][0] == 0
    assert requests[0]["t_ns"] == 10_060_000_000  # the clock when ~/stand was served

    # One step record per command: its clock time is the command's stamp; the view counts inputs.
    assert len(steps) == len(commands) == 13
    seqs = sorted([s[0] for s in steps] + [e["seq"] for e in events[1:]])
    assert seqs == list(range(1, len(seqs) + 1))  # one numbering for steps and events
    for i, (record, command) in enumerate(zip(steps, commands, strict=True)):
        stamp_ns = command.header.stamp.sec * 1_000_000_000 + command.header.stamp.nanosec
        view = debug.view_from_step(record)
        assert record[1] == stamp_ns == view["joint_states"][1]
        if i >= 8:  # walk steps wait for imu and odom of the same instant (stand needs joint_states only)
            assert view["imu"][1] == view["odom"][1] == stamp_ns
        assert view["joint_states"][0] == 4 + i and view["cmd_vel"][0] == 1
        assert view["joint_states"][2] == stamp_ns  # received at the clock time it was stamped
    # Observation and raw action of each walk step, as the policy saw and produced them.
    obs = np.array([m.data for m in h.stream["observation"]], dtype=np.float32)
    actions = np.array([m.data for m in h.stream["action"]], dtype=np.float32)
    layout = h.stream["observation"][0].layout.dim[0]
    assert (layout.label, layout.size, layout.stride) == ("obs", 48, 48)
    assert h.stream["action"][0].layout.dim[0].label == "action"
    np.testing.assert_allclose(obs[0][9:12], [0.5, 0.0, 0.2])  # the command term
    np.testing.assert_allclose(obs[0][12:24], 0.02, atol=1e-6)  # joint_pos_rel
    np.testing.assert_array_equal(obs[0][36:], 0.0)  # last_action, reset on walk
    np.testing.assert_array_equal(obs[1][36:], actions[0])
    for o, a in zip(obs, actions, strict=True):
        np.testing.assert_allclose(a, mlp_forward(LAYERS, o), atol=1e-5)
    expected = np.clip(spec.default_joint_pos + 0.2 * actions[-1], spec.joint_lower, spec.joint_upper)
    np.testing.assert_allclose(commands[-1].position, expected, atol=1e-6)
    node.destroy_node()
    h.destroy_node()


def test_publish_debug_false_publishes_no_debug_stream(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    # A name of its own: the graph may still list an earlier test's policy_node for a while.
    node = PolicyNode(
        cli_args=["--ros-args", "-r", "__node:=policy_node_no_debug"],
        parameter_overrides=[
            Parameter("policy", value=str(run)),
            Parameter("providers", value=["cpu"]),
            Parameter("publish_debug", value=False),
        ],
    )
    try:
        topics = {name for name, _ in node.get_publisher_names_and_types_by_node("policy_node_no_debug", "/")}
        assert "/joint_command" in topics
        assert not topics & {f"/policy_node_no_debug/{n}" for n in ("observation", "action", "step", "events")}
    finally:
        node.destroy_node()


def test_golden_bag_played_over_dds_into_the_policy_node() -> None:
    """The lockstep sim bag: inputs as recorded bytes, clock as recorded, mode switches as recorded."""
    bag = GOLDEN / "sim_default"
    rec = read_recording(bag)
    assert rec.start is not None and rec.start["trigger"] == "input"
    raw: dict[str, list[bytes]] = {}
    with Reader(bag) as reader:
        for conn, _t, data in reader.messages():
            raw.setdefault(conn.topic, []).append(bytes(data))
    config = rec.start["config"]
    node = PolicyNode(
        parameter_overrides=[
            Parameter("policy", value=str(GOLDEN / "policy")),
            Parameter("providers", value=["cpu"]),
            Parameter("trigger", value="input"),
            Parameter("use_sim_time", value=True),
            Parameter("stand_duration_s", value=config["stand_duration_s"]),
            Parameter("soft_start_s", value=config["soft_start_s"]),
            Parameter("input_timeout_s", value=config["input_timeout_s"] or 0.0),
            Parameter("cmd_vel_timeout_s", value=config["cmd_vel_timeout_s"]),
            Parameter("publish_debug", value=False),
        ]
    )
    h = BridgeHarness()
    spin = Spinner(node, h)
    publishers = {"joint_states": h.js_pub, "imu": h.imu_pub, "odom": h.odom_pub, "cmd_vel": h.cmd_pub}
    offsets = {"joint_states": debug.JOINT_STATES, "imu": debug.IMU, "odom": debug.ODOM, "cmd_vel": debug.CMD_VEL}
    clock = [0]

    def set_clock(t_ns: int) -> None:
        if t_ns > clock[0]:
            clock[0] = t_ns
            h.clock_pub.publish(Clock(clock=Time(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)))
            assert wait_until(lambda: node.get_clock().now().nanoseconds == t_ns, 2, poll=0.0002), "clock"

    try:
        assert wait_until(
            lambda: (
                all(p.get_subscription_count() >= 1 for p in publishers.values())
                and h.clock_pub.get_subscription_count() >= 1
                and node.command_pub.get_subscription_count() >= 1
            ),
            10,
        ), "DDS discovery did not complete"
        schedule = InputSchedule(rec)
        steps = 0
        for point in rec.points:
            for d in schedule.due(point):
                set_clock(d.recv_ns)
                count = node.view.record[offsets[d.kind]]
                if d.index is None:  # cmd_vel: the values the node's record names
                    vx, vy, wz = d.message.values
                    publishers[d.kind].publish(Twist(linear=Vector3(x=vx, y=vy), angular=Vector3(z=wz)))
                else:
                    publishers[d.kind].publish(raw[rec.topics[d.kind]][d.index])
                k = d.kind
                assert wait_until(lambda k=k, c=count: node.view.record[offsets[k]] > c, 2, poll=0.0002), k
            if point.kind == "step":
                steps += 1
                assert wait_until(lambda n=steps: len(h.commands) >= n, 2, poll=0.0002), f"no command {steps}"
            elif point.kind in ("request", "reset") and point.event:
                set_clock(point.t_ns)
                service = {"stand": "stand", "walk": "walk", "idle": "stop"}.get(point.event.get("requested"), "reset")
                assert h.call(service).success == point.event["accepted"], point.event
        time.sleep(0.05)
    finally:
        spin.close()
        node.destroy_node()
        h.destroy_node()
    commands = h.take_commands()
    assert len(commands) == len(rec.commands) == steps
    for replayed, recorded in zip(commands, rec.commands, strict=True):
        assert list(replayed.name) == list(recorded.names)
        assert replayed.header.stamp.sec * 1_000_000_000 + replayed.header.stamp.nanosec == recorded.stamp_ns
        np.testing.assert_allclose(replayed.position, recorded.positions, atol=1e-6, rtol=0)
