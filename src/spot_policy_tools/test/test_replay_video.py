"""The run video: a short synthetic bag (the base walks and yaws, the legs swing) becomes an H.264
MP4 with one frame per 1/30 s of sim time, and the frames show the motion."""

from __future__ import annotations

import math
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from nav_msgs.msg import Odometry
from rclpy.serialization import serialize_message
from sensor_msgs.msg import JointState

from spot_policy.core import contract
from spot_policy.ros.bag_recorder import BagRecorder
from spot_policy_tools.replay_video import FPS, HEIGHT, WIDTH, ReplayError, read_trajectory, render_video

T0_NS = 5_000_000_000
DURATION_S = 1.0
STAND = {"hx": 0.1, "hy": 0.9, "kn": -1.5}


def make_bag(path: Path, *, joint_states: bool = True) -> Path:
    """Odometry at 100 Hz and joint states at 50 Hz (URDF joint names: mapping is by name)."""
    names = [contract.urdf_name(j) for j in contract.SDK_JOINT_ORDER]
    with BagRecorder(path) as bag:
        for k in range(round(DURATION_S * 100) + 1):
            t = k / 100
            t_ns = T0_NS + k * 10_000_000
            stamp = divmod(t_ns, 1_000_000_000)
            odom = Odometry(child_frame_id="base_link")
            odom.header.frame_id = "odom"
            odom.header.stamp.sec, odom.header.stamp.nanosec = stamp
            p, q = odom.pose.pose.position, odom.pose.pose.orientation
            p.x, p.z = 0.5 * t, 0.5
            q.z, q.w = math.sin(0.5 * t / 2), math.cos(0.5 * t / 2)  # yaw 0.5 rad/s
            bag.write("/odom", "nav_msgs/msg/Odometry", serialize_message(odom), t_ns)
            if joint_states and k % 2 == 0:
                js = JointState(name=names)
                js.header.stamp.sec, js.header.stamp.nanosec = stamp
                swing = 0.4 * math.sin(2 * math.pi * 2.0 * t)
                js.position = [
                    STAND[j.split("_")[1]] + (swing if j.endswith("hy") else 0.0) for j in contract.SDK_JOINT_ORDER
                ]
                bag.write("/joint_states", "sensor_msgs/msg/JointState", serialize_message(js), t_ns)
    return path


def test_trajectory_maps_joints_by_name(tmp_path: Path) -> None:
    trajectory = read_trajectory(make_bag(tmp_path / "bag"))
    assert trajectory.odom_t[0] == 5.0 and len(trajectory.odom_t) == 101 and len(trajectory.joint_t) == 51
    frames = trajectory.frame_times(FPS)
    assert len(frames) == 31 and frames[-1] == pytest.approx(6.0)
    position, quat, joints = trajectory.sample(frames)
    assert position[15] == pytest.approx([0.25, 0.0, 0.5])
    assert quat[30] == pytest.approx([math.cos(0.25), 0.0, 0.0, math.sin(0.25)], abs=1e-9)  # wxyz
    knee = contract.ISAAC_JOINT_ORDER.index("hr_kn")
    assert np.all(joints[:, knee] == pytest.approx(-1.5))


def test_renders_an_mp4_of_the_motion(tmp_path: Path) -> None:
    out = tmp_path / "run.mp4"
    assert render_video(make_bag(tmp_path / "bag"), out) == 31
    frames_n, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert frames_n == 31
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    assert tuple(meta["size"]) == (WIDTH, HEIGHT) and meta["fps"] == FPS and "h264" in meta["codec"]
    frames = [np.frombuffer(f, np.uint8).reshape(HEIGHT, WIDTH, 3) for f in reader]
    assert len(frames) == 31
    diffs = [np.abs(frames[i].astype(int) - frames[0]).mean() for i in (10, 20, 30)]
    assert min(diffs) > 0.5, diffs  # the legs swing and the body turns: frames differ
    assert frames[15].std() > 10  # a scene, not a blank image


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="no such bag"):
        read_trajectory(tmp_path / "missing")
    with pytest.raises(ReplayError, match=r"has no joint_states topic .*it has: /odom"):
        read_trajectory(make_bag(tmp_path / "bag", joint_states=False))
