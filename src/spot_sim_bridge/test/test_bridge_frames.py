"""robot_description, /tf and /tf_static from the bridges, over real rclpy and DDS, read with the
real tf2_msgs/TFMessage type (built into the .venv by scripts/setup).

Acceptance: from the sim bridge's /tf at a known joint configuration, each foot's position in
``odom`` matches MuJoCo's own foot position (the foot geom's centre) within 1 mm.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from spot_policy.core import contract
from spot_policy.core.kinematics import KinematicTree, Transform
from spot_policy.ros.state_publisher import StatePublisher, tf_message_type
from spot_sim_bridge.model import robot_description
from spot_sim_bridge.ros.sim_bridge_node import SimBridgeNode

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "spot_policy_node" / "test"))
from policy_fixtures import make_run
from ros_harness import Spinner, wait_until

pytestmark = pytest.mark.ros
TFMessage = tf_message_type()
#: tf2_msgs/msg/TFMessage's type hash as upstream ROS 2 (Jazzy, Kilted) reports it
#: (``ros2 topic info -v /tf``): the same definition gives the same hash.
UPSTREAM_TF_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: A known, asymmetric configuration inside the limits (contract names).
POSE = {
    "fl_hx": 0.2, "fl_hy": 0.6, "fl_kn": -1.2,
    "fr_hx": -0.3, "fr_hy": 1.1, "fr_kn": -1.8,
    "hl_hx": 0.05, "hl_hy": 0.3, "hl_kn": -0.7,
    "hr_hx": -0.1, "hr_hy": 1.4, "hr_kn": -2.2,
}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def ros() -> Iterator[None]:
    rclpy.init()
    yield
    rclpy.shutdown()


class FrameListener(Node):
    """What RViz2 or tf2 would subscribe to: /tf, /tf_static and robot_description."""

    def __init__(self) -> None:
        super().__init__("frame_listener")
        self.lock = threading.Lock()
        self.tf: list = []
        self.static: list = []
        self.description: list[str] = []
        self.create_subscription(TFMessage, contract.TOPIC_TF, self._add(self.tf), QoSProfile(depth=100))
        self.create_subscription(TFMessage, contract.TOPIC_TF_STATIC, self._add(self.static), LATCHED)
        self.create_subscription(
            String, contract.TOPIC_ROBOT_DESCRIPTION, lambda m: self._add(self.description)(m.data), LATCHED
        )

    def _add(self, into: list):
        def add(msg) -> None:
            with self.lock:
                into.append(msg)

        return add

    def latest_transforms(self) -> dict[str, tuple[str, int, Transform]]:
        """child -> (parent, stamp ns, transform): the newest of each, static ones included."""
        out: dict[str, tuple[str, int, Transform]] = {}
        with self.lock:
            messages = [*self.static, *self.tf]
        for msg in messages:
            for t in msg.transforms:
                tr, ro = t.transform.translation, t.transform.rotation
                stamp = t.header.stamp.sec * 1_000_000_000 + t.header.stamp.nanosec
                out[t.child_frame_id] = (
                    t.header.frame_id,
                    stamp,
                    Transform(np.array([tr.x, tr.y, tr.z]), np.array([ro.x, ro.y, ro.z, ro.w])),
                )
        return out


def chain(transforms: dict[str, tuple[str, int, Transform]], frame: str, root: str) -> Transform:
    """``frame``'s pose in ``root``, walking parents as tf2's lookupTransform does."""
    pose = Transform.identity()
    while frame != root:
        parent, _, local = transforms[frame]
        pose = local * pose
        frame = parent
    return pose


pytestmark = [pytestmark, pytest.mark.skipif(TFMessage is None, reason="tf2_msgs not built: run scripts/setup")]


def test_tf2_msgs_is_the_upstream_type() -> None:
    assert TFMessage.__module__.startswith("tf2_msgs.msg")
    node = rclpy.create_node("tf_type_probe")
    try:
        node.create_publisher(TFMessage, "/tf_type_probe", 10)
        info = node.get_publishers_info_by_topic("/tf_type_probe")
        assert [i.topic_type for i in info] == ["tf2_msgs/msg/TFMessage"]
        assert str(info[0].topic_type_hash) == UPSTREAM_TF_HASH
    finally:
        node.destroy_node()


def test_sim_bridge_feet_in_odom_from_tf_match_mujoco_within_1_mm(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    bridge = SimBridgeNode(
        parameter_overrides=[
            Parameter("policy", value=str(run)),
            Parameter("mode", value="lockstep"),
            Parameter("lockstep_wait_s", value=0.0),  # no command, no step: the state stays put
        ]
    )
    listener = FrameListener()
    probe = rclpy.create_node("frame_probe")
    reset_pose = probe.create_publisher(JointState, "/sim_bridge/reset_pose", QoSProfile(depth=1))
    reset = probe.create_client(Trigger, "/sim_bridge/reset")
    spin = Spinner(bridge, listener, probe)
    try:
        assert wait_until(lambda: listener.description and listener.static, timeout=10), "no latched topics"
        assert listener.description[-1] == robot_description()
        static_children = {t.child_frame_id for m in listener.static for t in m.transforms}
        assert static_children == {contract.FRAME_BASE, "imu", *(f"{leg}_foot" for leg in contract.LEGS)}
        assert wait_until(lambda: reset_pose.get_subscription_count() > 0 and reset.service_is_ready(), timeout=10)
        reset_pose.publish(JointState(name=list(POSE), position=list(POSE.values())))
        assert wait_until(lambda: bridge._reset_pose is not None, timeout=5)
        future = reset.call_async(Trigger.Request())
        assert wait_until(future.done, timeout=5) and future.result().success
        with bridge._lock:  # lockstep without commands: this instant stays until the test ends
            stamp_ns = bridge.core.sim_time_ns
            data = bridge.core.backend.mj_data
            feet = {leg: data.geom(f"{leg}_foot").xpos.copy() for leg in contract.LEGS}
            joints = {name: float(data.joint(name).qpos[0]) for name in POSE}
        np.testing.assert_allclose([joints[n] for n in POSE], list(POSE.values()), atol=1e-9)
        assert wait_until(lambda: listener.latest_transforms().get("fl_lleg", ("", -1))[1] == stamp_ns, timeout=5)
        transforms = listener.latest_transforms()
        assert transforms[contract.FRAME_BODY][0] == contract.FRAME_ODOM
        for leg in contract.LEGS:
            foot = chain(transforms, f"{leg}_foot", contract.FRAME_ODOM).translation
            error = np.linalg.norm(foot - feet[leg])
            print(f"{leg} foot: /tf vs MuJoCo {error * 1e3:.2e} mm")
            assert error < 1e-3, f"{leg} foot from /tf {foot} vs MuJoCo {feet[leg]}: {error * 1e3:.3f} mm"
    finally:
        spin.close()
        for node in (bridge, listener, probe):
            node.destroy_node()


def test_robot_bridge_joint_order_gives_the_same_frames() -> None:
    """The robot bridge publishes joints in the SDK's order: /tf must follow the names, not the order."""
    node = rclpy.create_node("sdk_order_bridge")
    listener = FrameListener()
    spin = Spinner(node, listener)
    try:
        out = StatePublisher(node, contract.SDK_JOINT_ORDER, robot_description())
        assert wait_until(lambda: out.frames.tf_pub.get_subscription_count() > 0, timeout=10)
        q = np.array([POSE[name] for name in contract.SDK_JOINT_ORDER])
        position, quat = [1.0, -2.0, 0.45], [0.0, 0.0, np.sin(0.3), np.cos(0.3)]
        out.publish(5_000_000_000, quat, [0, 0, 0], [0, 0, 9.81], position, [0, 0, 0], q, q * 0, q * 0)
        out.publish(5_001_000_000, quat, [0, 0, 0], [0, 0, 9.81], position, [0, 0, 0], q * 0, q * 0, q * 0)
        assert out.frames.published == 1  # the second is within the /tf rate limit
        assert wait_until(lambda: listener.tf and listener.static, timeout=5)
        transforms = listener.latest_transforms()
        want = KinematicTree.from_urdf(robot_description()).link_poses(
            POSE, Transform(np.array(position), np.array(quat))
        )
        for leg in contract.LEGS:
            got = chain(transforms, f"{leg}_foot", contract.FRAME_ODOM).translation
            np.testing.assert_allclose(got, want[f"{leg}_foot"].translation, atol=1e-9)
        nan = q.copy()
        nan[3] = np.nan
        out.publish(6_000_000_000, quat, [0, 0, 0], [0, 0, 9.81], position, [0, 0, 0], nan, q * 0, q * 0)
        assert out.frames.published == 1  # never published with a NaN
    finally:
        spin.close()
        listener.destroy_node()
        node.destroy_node()


def test_tf_encoder_writes_what_rclpy_serializes() -> None:
    from geometry_msgs.msg import TransformStamped
    from rclpy.serialization import deserialize_message, serialize_message

    from spot_policy.ros.cdr import TFMessageEncoder

    frames = [(contract.FRAME_ODOM, contract.FRAME_BODY), ("body", "fl_hip"), ("fl_lleg", "fl_foot")]
    rng = np.random.default_rng(3)
    encode = TFMessageEncoder(frames)
    for stamp_ns in (0, 12_345_678_901, -1_500_000_000):
        translations, rotations = rng.normal(size=(3, 3)), rng.normal(size=(3, 4))
        msg = TFMessage()
        for (parent, child), t, r in zip(frames, translations, rotations, strict=True):
            ts = TransformStamped(child_frame_id=child)
            ts.header.frame_id = parent
            ts.header.stamp.sec, ts.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            ts.transform.translation.x, ts.transform.translation.y, ts.transform.translation.z = map(float, t)
            rot = ts.transform.rotation
            rot.x, rot.y, rot.z, rot.w = map(float, r)
            msg.transforms.append(ts)
        got = encode(stamp_ns, translations, rotations)
        assert deserialize_message(got, TFMessage) == msg  # rclpy's own decoder (its padding bytes differ)
        assert deserialize_message(serialize_message(msg), TFMessage) == msg
