"""A trial's recording as arrays (:class:`~spot_policy_tools.evaluate.metrics.TrialData`), and the feet.

The evaluation's driver records the messages itself (:func:`collect`); :func:`read_bag` reads the
same topics from a bag (e.g. ``ros2 bag record`` of a run with the bridge's ground truth on). Uses
the sim bridge's ground truth (``sim_bridge/ground_truth/batch``, or per instant
``sim_bridge/ground_truth/{odom,joint_states,joint_targets}``) and both nodes' event streams with
the ``rosbags`` reader (no rclpy). The policy's raw output is recovered from the targets the bridge
applied (target = offset + scale x action), so nothing is taken from the node's optional debug stream.
Foot positions come from the base pose and joint angles through Spot's MJCF (MuJoCo forward
kinematics, no physics); the ground under base and feet from the trial's terrain spec.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from spot_policy.core import contract
from spot_policy.ros.bag_recorder import default_typestore, deserialize_cdr
from spot_policy_tools.evaluate.metrics import TrialData
from spot_sim_bridge.core import ground_truth
from spot_sim_bridge.core.terrain import TerrainSpec

TOPICS = {
    "sim_bridge/ground_truth/batch": "std_msgs/msg/Float64MultiArray",
    "sim_bridge/ground_truth/odom": "nav_msgs/msg/Odometry",
    "sim_bridge/ground_truth/joint_states": "sensor_msgs/msg/JointState",
    "sim_bridge/ground_truth/joint_targets": "sensor_msgs/msg/JointState",
    "policy_node/events": "std_msgs/msg/String",
    "sim_bridge/events": "std_msgs/msg/String",
    contract.TOPIC_DIAGNOSTICS: "diagnostic_msgs/msg/DiagnosticArray",
}
#: What the trial's recorder records (recorder_node's "topic:type" form).
RECORDED = (
    *(f"{topic}:{msgtype}" for topic, msgtype in TOPICS.items()),
    f"{contract.TOPIC_CMD_VEL}:geometry_msgs/msg/Twist",
    f"{contract.TOPIC_PROFILE_SEGMENT}:std_msgs/msg/String",
)
FEET = ("fl_foot", "fr_foot", "hl_foot", "hr_foot")


class TrialDataError(ValueError):
    """A trial bag without what the metrics need."""


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _by_name(names: list[str], values: Any) -> np.ndarray:
    where = {contract.canonical_joint_name(n) or n: i for i, n in enumerate(names)}
    return np.array([values[where[n]] for n in contract.ISAAC_JOINT_ORDER], dtype=np.float64)


def read_bag(bag: Path) -> dict[str, Any]:
    """The series of a trial bag (recorded with :data:`RECORDED`), keyed by what they are."""
    if not Path(bag).exists():
        raise TrialDataError(f"{bag}: no such bag")
    from rosbags.rosbag2 import Reader  # only for a bag recorded by hand: trials never read one

    store = default_typestore()

    def messages():
        with Reader(bag) as reader:
            conns = [c for c in reader.connections if c.topic.lstrip("/") in TOPICS]
            for conn, _t, raw in reader.messages(connections=conns):
                yield conn.topic.lstrip("/"), deserialize_cdr(store, raw, conn.msgtype)

    return collect(messages(), str(bag))


def collect(messages, source: str = "the trial") -> dict[str, Any]:
    """The series from ``(topic, message)`` pairs of :data:`TOPICS` (rosbags' or rclpy's messages:
    the same fields), in any order; instants are matched by their header stamps."""
    odom: dict[int, tuple] = {}
    joints: dict[int, tuple] = {}
    targets: dict[int, np.ndarray] = {}
    policy_events: list[dict] = []
    bridge_events: list[dict] = []
    timing: dict[str, str] = {}
    for topic, msg in messages:
        if topic.endswith("ground_truth/odom"):
            p, q = msg.pose.pose.position, msg.pose.pose.orientation
            lin, ang = msg.twist.twist.linear, msg.twist.twist.angular
            odom[_stamp_ns(msg.header)] = (
                p.x,
                p.y,
                p.z,
                q.x,
                q.y,
                q.z,
                q.w,
                lin.x,
                lin.y,
                lin.z,
                ang.x,
                ang.y,
                ang.z,
            )
        elif topic.endswith("ground_truth/joint_states"):
            names = list(msg.name)
            joints[_stamp_ns(msg.header)] = (
                _by_name(names, msg.position),
                _by_name(names, msg.velocity),
                _by_name(names, msg.effort),
            )
        elif topic.endswith("ground_truth/joint_targets"):
            targets[_stamp_ns(msg.header)] = _by_name(list(msg.name), msg.position)
        elif topic.endswith("ground_truth/batch"):
            try:
                rows = ground_truth.split(msg.data)
            except ValueError as exc:
                raise TrialDataError(f"{source}: {exc}") from None
            for i, stamp in enumerate(rows["t_ns"].tolist()):  # in order: a later row of a stamp wins
                odom[stamp] = tuple(rows["odom"][i].tolist())
                joints[stamp] = (rows["q"][i], rows["dq"][i], rows["tau"][i])
                if not np.isnan(rows["targets"][i]).all():
                    targets[stamp] = rows["targets"][i]
        elif topic.endswith("events"):
            try:
                record = json.loads(msg.data)
            except ValueError:
                continue
            (policy_events if topic.startswith("policy_node") else bridge_events).append(record)
        else:  # diagnostics: the policy node's last timing figures
            for status in msg.status:
                if status.name.startswith("policy_node"):
                    timing.update({kv.key: kv.value for kv in status.values})
    stamps = sorted(set(odom) & set(joints))
    if len(stamps) < 2:
        raise TrialDataError(f"{source}: fewer than two ground-truth instants; the trial recorded nothing usable")
    return {
        "t_ns": np.array(stamps, dtype=np.int64),
        "odom": np.array([odom[s] for s in stamps]),
        "q": np.array([joints[s][0] for s in stamps]),
        "dq": np.array([joints[s][1] for s in stamps]),
        "tau": np.array([joints[s][2] for s in stamps]),
        # The targets in force at each instant (none before the first command).
        "targets": np.array([targets.get(s, np.full(12, np.nan)) for s in stamps]),
        "policy_events": [e for e in policy_events if e.get("event") == "log"],
        "bridge_events": bridge_events,
        "timing": timing,
    }


class FootKinematics:
    """Foot sphere centres from base pose and joint angles (Spot's MJCF, forward kinematics only)."""

    def __init__(self) -> None:
        if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
            os.environ["MUJOCO_GL"] = "osmesa"
        import mujoco

        from spot_sim_bridge.model import SPOT_MJCF

        self._mujoco = mujoco
        self.model = mujoco.MjModel.from_xml_path(str(SPOT_MJCF))
        self.data = mujoco.MjData(self.model)
        self.joint_qpos = np.array([self.model.joint(n).qposadr[0] for n in contract.ISAAC_JOINT_ORDER])
        self.base_qpos = int(self.model.joint("base").qposadr[0])
        self.feet = np.array([self.model.geom(f).id for f in FEET])

    def __call__(self, pos: np.ndarray, quat_xyzw: np.ndarray, q: np.ndarray) -> np.ndarray:
        out = np.empty((len(pos), len(self.feet), 3))
        d, b = self.data, self.base_qpos
        for i in range(len(pos)):
            d.qpos[b : b + 3] = pos[i]
            x, y, z, w = quat_xyzw[i]
            d.qpos[b + 3 : b + 7] = (w, x, y, z)
            d.qpos[self.joint_qpos] = q[i]
            self._mujoco.mj_kinematics(self.model, d)
            out[i] = d.geom_xpos[self.feet]
        return out


@functools.cache
def foot_kinematics() -> FootKinematics:
    """This process's one :class:`FootKinematics` (parsing the MJCF is the costly part; a fork
    server builds it once for all its trials, spot_policy_tools.evaluate.trial_preload)."""
    return FootKinematics()


def trial_data(raw: dict[str, Any], terrain: TerrainSpec) -> tuple[TrialData, dict]:
    """The metrics' input from a trial's series (:func:`collect`, :func:`read_bag`); times in s
    since the trial began at sim time 0."""
    o = raw["odom"]
    pos, quat = o[:, 0:3], o[:, 3:7]
    grid = None if terrain.flat else terrain.heights()
    feet = foot_kinematics()(pos, quat, raw["q"])
    under_feet = terrain.height_at(feet[:, :, 0], feet[:, :, 1], grid)
    data = TrialData(
        t=raw["t_ns"] * 1e-9,
        pos=pos,
        quat_xyzw=quat,
        lin_vel_body=o[:, 7:10],
        ang_vel_body=o[:, 10:13],
        q=raw["q"],
        dq=raw["dq"],
        tau=raw["tau"],
        ground_under_base=terrain.height_at(pos[:, 0], pos[:, 1], grid),
        feet=feet,
        ground_under_feet=under_feet,
        targets=raw["targets"],
        policy_events=raw["policy_events"],
        bridge_events=raw["bridge_events"],
    )
    return data, raw["timing"]
