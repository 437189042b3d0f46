"""Hostile bytes over DDS into running nodes: each stays alive and in the state it should be in.

The sim bridge (real time), the policy node and teleop run as processes, as ``spot-policy sim`` or
``sim.launch.py`` start them. A publisher in this test sends payloads no reader can read (random
bytes, a plain-CDR header with random bytes, truncated real messages, absurd lengths) on every
topic they read. Nothing may die; an unreadable message is counted in diagnostics; the policy node
faults, naming the input, only when its mode needs that input (issue 14). The robot bridge gets the
same on joint_command in src/spot_hw_bridge/test/test_hw_bridge_node.py.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Imu, JointState, Joy
from std_srvs.srv import Trigger

from spot_policy.core import contract
from spot_policy.ros import bringup
from spot_policy_tools.launcher import NodeGroup, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def unreadable(rng: random.Random, real: bytes) -> list[bytes]:
    """Payloads no reader can read: random bytes (no CDR encapsulation), a real message truncated,
    one in an encapsulation no middleware writes."""
    out = []
    for _ in range(40):
        out.append(b"\x7f" + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
        out.append(real[: rng.randrange(4, max(5, len(real) - 8))])
        out.append(bytes([0x51, rng.randrange(256)]) + real[2:])
    return out


def garbage(rng: random.Random, real: bytes) -> list[bytes]:
    """Unreadable payloads, plus a plain-CDR header over random bytes, a real message with bytes
    flipped, one with absurd lengths: these may read as some message (of absurd, NaN or huge
    values: a fault, by the rules)."""
    out = unreadable(rng, real)
    for _ in range(40):
        out.append(real[:4] + b"\xff\xff\xff\x7f" * 4 + real[20:])
        out.append(b"\x00\x01\x00\x00" + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))))
        flipped = bytearray(real)
        for _ in range(4):
            flipped[rng.randrange(4, len(flipped))] = rng.randrange(256)
        out.append(bytes(flipped))
    return out


class Hostile(Node):
    def __init__(self) -> None:
        super().__init__("hostile_publisher")
        self.lock = threading.Lock()
        self.diag: dict[str, dict[str, str]] = {}
        self.create_subscription(DiagnosticArray, contract.TOPIC_DIAGNOSTICS, self._on_diag, 10)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {
            contract.TOPIC_JOINT_STATES: self.create_publisher(JointState, "joint_states", qos_profile_sensor_data),
            contract.TOPIC_IMU: self.create_publisher(Imu, "imu/data", qos_profile_sensor_data),
            contract.TOPIC_CMD_VEL: self.create_publisher(Twist, "cmd_vel", 10),
            contract.TOPIC_JOINT_COMMAND: self.create_publisher(JointState, "joint_command", reliable),
            contract.TOPIC_JOY: self.create_publisher(Joy, "joy", 10),
        }
        self.stand = self.create_client(Trigger, "/policy_node/stand")

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            for status in msg.status:
                self.diag[status.name] = {kv.key: kv.value for kv in status.values} | {"_message": status.message}

    def status(self, prefix: str) -> dict[str, str]:
        with self.lock:
            return next((v for k, v in self.diag.items() if k.startswith(prefix)), {})

    def send(self, topic: str, payloads: list[bytes]) -> int:
        """Publish raw bytes; some the middleware itself refuses to send (those never reach a node)."""
        sent = 0
        for data in payloads:
            try:
                self.pubs[topic].publish(data)
                sent += 1
            except Exception:  # rclpy's RCLError: Fast DDS would not serialize-send these bytes
                pass
            time.sleep(0.002)
        return sent


def test_garbage_on_every_input_kills_nothing_and_faults_only_where_needed(tmp_path: Path) -> None:
    rng = random.Random(14)
    specs = bringup.sim_nodes("spot_flat_mjx", realtime=True, teleop=True)
    group = NodeGroup(tmp_path / "logs")
    procs = [group.start(spec) for spec in specs]
    rclpy.init()
    node = Hostile()
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    alive = lambda: all(p.poll() is None for p in procs)  # noqa: E731
    try:
        assert wait_for(lambda: node.status("policy_node") and node.status("sim_bridge"), 60), "no diagnostics"
        assert node.stand.wait_for_service(timeout_sec=10)
        assert node.stand.call_async(Trigger.Request()) is not None
        assert wait_for(lambda: node.status("policy_node").get("mode") == "stand", 10), node.status("policy_node")
        # Inputs the standing node does not need, the bridge's and teleop's, unreadable: counted,
        # nothing faults. (Readable random ones could be a NaN cmd_vel, a fault by the rules, or a
        # joy message with buttons pressed, which calls services as a pad would.)
        real = {
            contract.TOPIC_CMD_VEL: serialize_message(Twist()),
            contract.TOPIC_JOINT_COMMAND: serialize_message(JointState(name=["fl_hx"], position=[0.0])),
            contract.TOPIC_JOY: serialize_message(Joy(axes=[0.0] * 8, buttons=[0] * 13)),
        }
        for topic, payload in real.items():
            # Sent once each reader has matched (teleop is discovered on its own time).
            assert wait_for(lambda t=topic: node.pubs[t].get_subscription_count() > 0, 10), topic
            assert node.send(topic, unreadable(rng, payload)) > 50, topic
        assert wait_for(lambda: int(node.status("sim_bridge").get("bad_messages.joint_command", 0)) > 0, 5)
        assert wait_for(lambda: int(node.status("policy_node").get("bad_messages.cmd_vel", 0)) > 0, 5)
        assert alive(), [p.tail() for p in procs]
        assert node.status("policy_node").get("mode") == "stand"
        teleop_log = tmp_path / "logs" / "teleop.log"
        ignored = "joy: ignored a message that cannot be read"
        assert wait_for(lambda: ignored in teleop_log.read_text(), 5), teleop_log.read_text()[-2000:]
        # joint_states, which standing needs: the node faults naming it, and stays up.
        js = serialize_message(JointState(name=list(contract.SDK_JOINT_ORDER), position=[0.0] * 12))
        node.send(contract.TOPIC_JOINT_STATES, garbage(rng, js)[:60])
        assert wait_for(lambda: node.status("policy_node").get("mode") == "fault", 5), node.status("policy_node")
        fault = node.status("policy_node")["fault"]
        assert fault.startswith("joint_states: a message could not be read"), fault
        node.send(contract.TOPIC_IMU, garbage(rng, serialize_message(Imu()))[:60])
        time.sleep(1.0)
        assert alive(), [p.tail() for p in procs]
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        codes = group.stop()
    assert codes == {spec.name: 0 for spec in specs}, codes
