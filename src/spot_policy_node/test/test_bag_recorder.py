"""The in-project bag recorder: the core writes bags that rosbags, mcap and ``ros2 bag info`` read;
the node records every message over real DDS, stamped with its (sim) clock; signals close the bag.

The bytes written are rclpy's own CDR, so a round trip proves rosbags' Humble definitions describe
what rclpy puts on the wire. rclpy's ``serialize_message`` (rmw_fastrtps here) returns its size
estimate as the length: some messages come with trailing uninitialized bytes, which rosbags' strict
``deserialize_cdr`` rejects and :func:`spot_policy.ros.bag_recorder.deserialize_cdr` tolerates; the
bytes a subscription receives over DDS are exact, and rosbags decodes them strictly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TransformStamped, Twist
from mcap.reader import make_reader
from nav_msgs.msg import Odometry
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Imu, JointState, Joy
from std_msgs.msg import Float32MultiArray, Int64MultiArray, MultiArrayDimension, String

from spot_policy.core import contract
from spot_policy.ros.bag_recorder import SENSOR_DATA, BagRecorder, BagRecorderError, default_typestore, deserialize_cdr
from spot_policy.ros.recorder_node import DEFAULT_TOPICS, RecorderNode, parse_topic_spec

SIM_T_NS = 100_000_000_000  # the sim time the node test runs at: 100 s


def sample_messages(i: int) -> dict[str, tuple[str, object]]:
    """One message of every default topic's type, varied by ``i``: topic -> (type, message)."""
    stamp = Time(sec=10 + i, nanosec=5000 * i)
    js = JointState(name=list(contract.SDK_JOINT_ORDER), position=[0.1 * i + k for k in range(12)])
    js.header.stamp, js.velocity, js.effort = stamp, [float(k) for k in range(12)], [0.5] * 12
    imu = Imu()
    imu.header.stamp, imu.header.frame_id = stamp, contract.FRAME_BASE
    imu.orientation.w, imu.angular_velocity.z, imu.linear_acceleration.z = 1.0, 0.01 * i, 9.81
    odom = Odometry(child_frame_id=contract.FRAME_BASE)
    odom.header.stamp, odom.header.frame_id = stamp, contract.FRAME_ODOM
    odom.pose.pose.position.x, odom.pose.pose.position.z, odom.pose.pose.orientation.w = 0.01 * i, 0.5, 1.0
    odom.twist.twist.linear.x = 0.5
    twist = Twist()
    twist.linear.x, twist.angular.z = 0.5, -0.1 * i
    joy = Joy(axes=[0.0, 0.5, -1.0], buttons=[0, 1, i % 2])
    command = JointState(name=list(contract.ISAAC_JOINT_ORDER), position=[-0.01 * i] * 12)
    diag = DiagnosticArray(
        status=[
            DiagnosticStatus(level=b"\x01", name="policy", message=f"tick {i}", values=[KeyValue(key="k", value="v")])
        ]
    )
    layout_dim = MultiArrayDimension(label="obs", size=3, stride=3)
    obs = Float32MultiArray(data=[0.25 * i, 1.0, -2.0])
    obs.layout.dim = [layout_dim]
    return {
        "/joint_states": ("sensor_msgs/msg/JointState", js),
        "/imu/data": ("sensor_msgs/msg/Imu", imu),
        "/odom": ("nav_msgs/msg/Odometry", odom),
        "/cmd_vel": ("geometry_msgs/msg/Twist", twist),
        "/joy": ("sensor_msgs/msg/Joy", joy),
        "/joint_command": ("sensor_msgs/msg/JointState", command),
        "/diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", diag),
        "/clock": ("rosgraph_msgs/msg/Clock", Clock(clock=stamp)),
        "/profile/segment": ("std_msgs/msg/String", String(data=f'{{"segment": "s{i}", "index": {i}, "t": 1.0}}')),
        "/policy_node/observation": ("std_msgs/msg/Float32MultiArray", obs),
        "/policy_node/action": ("std_msgs/msg/Float32MultiArray", Float32MultiArray(data=[0.5] * 12)),
        "/policy_node/step": ("std_msgs/msg/Int64MultiArray", Int64MultiArray(data=[i, 10**18 + i] + [0] * 11)),
        "/policy_node/events": ("std_msgs/msg/String", String(data=f'{{"seq": {i}, "event": "log"}}')),
        "/robot_description": ("std_msgs/msg/String", String(data=f'<robot name="spot{i}"/>')),
        "/tf": ("tf2_msgs/msg/TFMessage", tf_message(i, contract.FRAME_ODOM, contract.FRAME_BODY)),
        "/tf_static": ("tf2_msgs/msg/TFMessage", tf_message(i, contract.FRAME_BODY, contract.FRAME_BASE)),
    }


def tf_message(i: int, parent: str, child: str) -> object:
    from tf2_msgs.msg import TFMessage  # built by scripts/setup

    transform = TransformStamped(child_frame_id=child)
    transform.header.stamp, transform.header.frame_id = Time(sec=10 + i), parent
    transform.transform.translation.x, transform.transform.rotation.w = 0.1 * i, 1.0
    return TFMessage(transforms=[transform])


N_CORE = 5


@pytest.fixture(scope="module")
def core_bag(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[tuple[int, bytes]]]]:
    """A bag written by the core: N_CORE messages of every type; returns it and what was written."""
    path = tmp_path_factory.mktemp("core") / "bag"
    written: dict[str, list[tuple[int, bytes]]] = {}
    with BagRecorder(path) as bag:
        bag.set_qos("/odom", SENSOR_DATA)
        for i in range(N_CORE):
            for topic, (msgtype, msg) in sample_messages(i).items():
                data = serialize_message(msg)
                t_ns = 1_000_000_000 + i * 20_000_000 + len(written.get(topic, ()))
                bag.write(topic, msgtype, data, t_ns)
                written.setdefault(topic, []).append((t_ns, data))
    return path, written


def test_rosbags_reads_back_every_message(core_bag: tuple[Path, dict[str, list[tuple[int, bytes]]]]) -> None:
    path, written = core_bag
    typestore = default_typestore()
    read: dict[str, list[tuple[int, bytes]]] = {}
    with Reader(path) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert reader.message_count == N_CORE * len(written)
        for conn, t_ns, raw in reader.messages():
            read.setdefault(conn.topic, []).append((t_ns, bytes(raw)))
            deserialize_cdr(typestore, raw, conn.msgtype)  # rosbags' definitions parse rclpy's bytes
    assert read == written
    assert types == {topic: msgtype for topic, (msgtype, _) in sample_messages(0).items()}
    odom = deserialize_cdr(typestore, written["/odom"][3][1], "nav_msgs/msg/Odometry")
    assert (odom.pose.pose.position.x, odom.child_frame_id, odom.header.stamp.sec) == (0.03, "base_link", 13)
    js = deserialize_cdr(typestore, written["/joint_states"][2][1], "sensor_msgs/msg/JointState")
    assert list(js.name) == list(contract.SDK_JOINT_ORDER) and js.position[1] == pytest.approx(1.2)


def test_mcap_library_reads_the_file(core_bag: tuple[Path, dict[str, list[tuple[int, bytes]]]]) -> None:
    path, written = core_bag
    (mcap_file,) = path.glob("*.mcap")
    classes = {topic: type(msg) for topic, (_, msg) in sample_messages(0).items()}
    read: dict[str, list[tuple[int, bytes]]] = {}
    with open(mcap_file, "rb") as f:
        reader = make_reader(f)
        assert reader.get_header().profile == "ros2"
        summary = reader.get_summary()
        assert summary is not None and summary.statistics.message_count == N_CORE * len(written)
        for schema, channel, message in reader.iter_messages():
            assert (schema.encoding, channel.message_encoding) == ("ros2msg", "cdr")
            assert schema.name == sample_messages(0)[channel.topic][0]
            assert "offered_qos_profiles" in channel.metadata
            read.setdefault(channel.topic, []).append((message.log_time, message.data))
            deserialize_message(message.data, classes[channel.topic])  # rclpy parses it back
        assert [m.name for m in reader.iter_metadata()] == ["rosbag2"]
    assert {k: sorted(v) for k, v in read.items()} == written


def test_metadata_has_what_ros2_bag_info_reads(core_bag: tuple[Path, dict[str, list[tuple[int, bytes]]]]) -> None:
    path, written = core_bag
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    stamps = [t for msgs in written.values() for t, _ in msgs]
    assert info["version"] == 8  # offered_qos_profiles as a string: Humble's ros2 bag parses it
    assert info["storage_identifier"] == "mcap"
    assert info["duration"]["nanoseconds"] == max(stamps) - min(stamps)
    assert info["starting_time"]["nanoseconds_since_epoch"] == min(stamps)
    assert info["message_count"] == len(stamps)
    assert info["relative_file_paths"] == ["bag.mcap"] and (path / "bag.mcap").is_file()
    by_topic = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    assert set(by_topic) == set(written)
    for topic, entry in by_topic.items():
        meta = entry["topic_metadata"]
        assert entry["message_count"] == N_CORE
        assert meta["type"] == sample_messages(0)[topic][0]
        assert meta["serialization_format"] == "cdr"
        (qos,) = yaml.safe_load(meta["offered_qos_profiles"])  # a YAML string, as Humble writes it
        assert qos["reliability"] == (2 if topic == "/odom" else 1)  # best effort / reliable
        assert qos["history"] == 1 and qos["durability"] == 2 and qos["depth"] == (5 if topic == "/odom" else 10)


def test_refuses_a_folder_with_content(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("a previous run")
    with pytest.raises(BagRecorderError, match="not empty"):
        BagRecorder(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with BagRecorder(empty) as bag:  # an empty folder is fine: e.g. made by a launch file
        bag.write("/cmd_vel", "geometry_msgs/msg/Twist", serialize_message(Twist()), 1)
    assert (empty / "metadata.yaml").is_file()


def test_errors_are_clear(tmp_path: Path) -> None:
    bag = BagRecorder(tmp_path / "bag")
    with pytest.raises(BagRecorderError, match="not in the recorder's typestore"):
        bag.write("/x", "my_msgs/msg/Thing", b"", 1)
    bag.write("/cmd_vel", "geometry_msgs/msg/Twist", serialize_message(Twist()), 1)
    with pytest.raises(BagRecorderError, match="recorded as geometry_msgs/msg/Twist"):
        bag.write("/cmd_vel", "std_msgs/msg/String", serialize_message(String()), 2)
    assert bag.close() == {"/cmd_vel": 1}
    assert bag.close() == {"/cmd_vel": 1}  # idempotent
    with pytest.raises(BagRecorderError, match="closed"):
        bag.write("/cmd_vel", "geometry_msgs/msg/Twist", serialize_message(Twist()), 3)


def test_write_is_thread_safe(tmp_path: Path) -> None:
    data = serialize_message(Twist())
    with BagRecorder(tmp_path / "bag") as bag:

        def writer(k: int) -> None:
            for i in range(300):
                bag.write(f"/t{k % 2}", "geometry_msgs/msg/Twist", data, k * 1000 + i)

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    with Reader(tmp_path / "bag") as reader:
        assert sorted(t for _, t, _ in reader.messages()) == sorted(k * 1000 + i for k in range(4) for i in range(300))


def test_topic_specs() -> None:
    assert parse_topic_spec("odom:nav_msgs/msg/Odometry").reliable is False
    assert parse_topic_spec("cmd_vel:geometry_msgs/msg/Twist").reliable is True
    assert parse_topic_spec("cmd_vel:geometry_msgs/msg/Twist:best_effort").reliable is False
    for bad in ("odom", "odom:Odometry", "odom:nav_msgs/msg/Odometry:fast"):
        with pytest.raises(ValueError, match="fix:"):
            parse_topic_spec(bad)


# --- the node over real DDS -------------------------------------------------------------------

N_NODE = 10
SENSOR_TOPICS = {"/joint_states", "/imu/data", "/odom", "/clock"}


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


@pytest.mark.ros
def test_node_records_every_message_at_sim_time(ros_context: Context, tmp_path: Path) -> None:
    out = tmp_path / "bag"
    recorder = RecorderNode(
        context=ros_context,
        parameter_overrides=[Parameter("out", value=str(out)), Parameter("use_sim_time", value=True)],
    )
    publisher_node = Node("recorder_test_publisher", context=ros_context, start_parameter_services=False)
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    samples = sample_messages(0)

    def qos(topic: str) -> QoSProfile:
        if topic in SENSOR_TOPICS - {"/clock"}:
            return qos_profile_sensor_data
        # as the profile player and the policy node's events
        latched_topics = (f"/{contract.TOPIC_PROFILE_SEGMENT}", "/policy_node/events", "/robot_description")
        latched_topics += ("/tf_static",)
        return latched if topic in latched_topics else reliable

    publishers = {
        topic: publisher_node.create_publisher(type(msg), topic, qos(topic)) for topic, (_, msg) in samples.items()
    }
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(recorder)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: all(p.get_subscription_count() > 0 for p in publishers.values())), "not all matched"
        publishers["/clock"].publish(Clock(clock=Time(sec=SIM_T_NS // 10**9)))
        assert wait_for(lambda: recorder.get_clock().now().nanoseconds == SIM_T_NS), "sim time not received"
        sent: dict[str, list[object]] = {"/clock": [Clock(clock=Time(sec=SIM_T_NS // 10**9))]}
        for i in range(N_NODE):
            for topic, (_, msg) in sample_messages(i).items():
                if topic != "/clock":
                    publishers[topic].publish(msg)
                    sent.setdefault(topic, []).append(msg)
            time.sleep(0.003)  # a best-effort burst is not a test of the loopback's buffers
        expected = {topic: len(msgs) for topic, msgs in sent.items()}
        assert wait_for(lambda: recorder.bag.counts == expected), f"{recorder.bag.counts} != {expected}"
    finally:
        executor.shutdown(timeout_sec=2.0)
        thread.join(timeout=2.0)
        recorder.close()
        recorder.destroy_node()
        publisher_node.destroy_node()

    received: dict[str, list[object]] = {}
    typestore = default_typestore()
    with Reader(out) as reader:
        for conn, t_ns, raw in reader.messages():
            received.setdefault(conn.topic, []).append(deserialize_message(raw, type(samples[conn.topic][1])))
            typestore.deserialize_cdr(raw, conn.msgtype)  # wire bytes are exact: the strict decoder takes them
            assert conn.msgtype == samples[conn.topic][0]
            if conn.topic != "/clock":
                assert t_ns == SIM_T_NS  # the node's clock: sim time
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
    assert received == sent  # every message, in order
    # The bag keeps what the publishers offered, whatever the recorder subscribed with.
    assert all(len(offered) == 1 for offered in qos.values())
    assert {t for t, (q,) in qos.items() if q.reliability.name == "BEST_EFFORT"} == SENSOR_TOPICS - {"/clock"}
    assert qos["/clock"][0].reliability.name == "RELIABLE"  # subscribed best-effort, offered reliable
    assert len(DEFAULT_TOPICS) == len(samples)


@pytest.mark.ros
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_closes_the_bag(ros_context: Context, tmp_path: Path, sig: signal.Signals) -> None:
    """A signal while messages stream in: exit 0, and the bag's metadata matches its content."""
    out = tmp_path / "bag"
    topic = f"signal_test_{sig.name.lower()}"  # no stale discovery from an earlier test's subscriber
    spec = f"{topic}:geometry_msgs/msg/Twist"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spot_policy.ros.recorder_node",
            "--ros-args",
            "-p",
            f"out:={out}",
            "-p",
            f"topics:=['{spec}']",
        ],
        env=os.environ.copy(),
        stderr=subprocess.PIPE,
        text=True,
    )
    node = Node("signal_test_publisher", context=ros_context, start_parameter_services=False)
    publisher = node.create_publisher(Twist, topic, 10)
    try:
        assert wait_for(lambda: publisher.get_subscription_count() > 0, timeout=15.0), "recorder did not start"
        time.sleep(0.5)  # the recorder's side of discovery (0.1 s lost every message once, under CI load)
        for i in range(120):  # 0.6 s at 200 Hz, the signal lands in the middle
            if i == 60:
                process.send_signal(sig)
            msg = Twist()
            msg.linear.x = float(i)
            publisher.publish(msg)
            time.sleep(0.005)
        _, stderr = process.communicate(timeout=10.0)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        node.destroy_node()
    assert process.returncode == 0, stderr
    info = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    with Reader(out) as reader:
        values = [default_typestore().deserialize_cdr(raw, c.msgtype).linear.x for c, _, raw in reader.messages()]
    assert 0 < len(values) == info["message_count"] and f"wrote {len(values)} messages" in stderr
    # In order and none torn (the first may precede the recorder's side of discovery).
    assert values == [float(i) for i in range(int(values[0]), int(values[0]) + len(values))]


@pytest.mark.ros
def test_node_refuses_bad_parameters_before_creating_anything(ros_context: Context, tmp_path: Path) -> None:
    def make(**params: object) -> RecorderNode:
        overrides = [Parameter(name, value=value) for name, value in params.items()]
        return RecorderNode(context=ros_context, parameter_overrides=overrides)

    with pytest.raises(ValueError, match="parameter 'out' is empty"):
        make()
    with pytest.raises(BagRecorderError, match="not in the recorder's typestore"):
        make(out=str(tmp_path / "a"), topics=["x:my_msgs/msg/Thing"])
    with pytest.raises(ValueError, match="listed twice"):
        make(out=str(tmp_path / "b"), topics=["odom:nav_msgs/msg/Odometry", "/odom:nav_msgs/msg/Odometry"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("")
    with pytest.raises(BagRecorderError, match="not empty"):
        make(out=str(tmp_path / "c"))
