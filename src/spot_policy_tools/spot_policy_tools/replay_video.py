"""Render an MP4 of a recorded run: a kinematic replay of the bag in MuJoCo, offscreen.

The video of the main job's run folder. It is made from the bag, not during the run, so rendering
never slows the simulation and any bag (sim or robot) can be watched. The base pose comes from
``odom`` (position + orientation), the joint angles from ``joint_states`` (matched by name, any
naming convention), both interpolated to the video's frame times and set into ``model/spot.xml``;
``mj_forward`` places the bodies (no physics). The camera is the model's ``track`` camera.

Speed on a headless machine (OSMesa is software rendering): no multisampling, no shadows and no
floor reflection by default, which is ~5x faster than MuJoCo's defaults; x264 runs in its own
process on the other core.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# A headless machine has no display for MuJoCo's default (GLFW) context; OSMesa renders anywhere.
# Must be decided before mujoco is imported; an explicit MUJOCO_GL always wins.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "osmesa"

import imageio_ffmpeg
import mujoco
from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader

from spot_policy.core import contract
from spot_policy.ros.bag_recorder import default_typestore, deserialize_cdr
from spot_sim_bridge.model import SPOT_MJCF

CAMERA = "track"
WIDTH, HEIGHT, FPS = 640, 480, 30
_BASE_JOINT = "base"
_TYPES = {"odom": "nav_msgs/msg/Odometry", "joint_states": "sensor_msgs/msg/JointState"}


class ReplayError(ValueError):
    """A bag that cannot be replayed (missing, unreadable, lacking odom or joint states)."""


@dataclass(frozen=True)
class Trajectory:
    """Recorded base and joint motion, in sim seconds; joints in ``contract.ISAAC_JOINT_ORDER``."""

    odom_t: np.ndarray  # (N,)
    position: np.ndarray  # (N, 3)
    quat_wxyz: np.ndarray  # (N, 4), MuJoCo's order
    joint_t: np.ndarray  # (K,)
    joint_pos: np.ndarray  # (K, 12)

    def frame_times(self, fps: float = FPS) -> np.ndarray:
        """Frame times from the first to the last odometry sample, every 1/fps s."""
        span = float(self.odom_t[-1] - self.odom_t[0])
        n = int(np.floor(span * fps + 1e-6)) + 1
        return self.odom_t[0] + np.arange(n) / fps

    def sample(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(position (F, 3), quaternion wxyz (F, 4), joints (F, 12)) at times ``t``, interpolated."""
        position = np.column_stack([np.interp(t, self.odom_t, self.position[:, k]) for k in range(3)])
        # Normalized lerp between neighbours on the same hemisphere: at >= 30 Hz odometry the
        # angle between samples is small, where nlerp and slerp agree.
        n = len(self.odom_t)
        hi = np.clip(np.searchsorted(self.odom_t, t, side="right"), 1, n - 1) if n > 1 else np.zeros(len(t), int)
        lo = np.maximum(hi - 1, 0)
        dt = self.odom_t[hi] - self.odom_t[lo]
        alpha = np.clip(np.divide(t - self.odom_t[lo], dt, out=np.zeros_like(t), where=dt > 0), 0.0, 1.0)
        q0, q1 = self.quat_wxyz[lo], self.quat_wxyz[hi]
        q1 = q1 * np.sign(np.sum(q0 * q1, axis=1, keepdims=True) + 1e-12)
        quat = (1.0 - alpha)[:, None] * q0 + alpha[:, None] * q1
        quat /= np.linalg.norm(quat, axis=1, keepdims=True)
        joints = np.column_stack([np.interp(t, self.joint_t, self.joint_pos[:, j]) for j in range(12)])
        return position, quat, joints


def _find(connections: Sequence[Connection], name: str) -> Connection | None:
    exact = [c for c in connections if c.topic in (name, f"/{name}")]
    return exact[0] if exact else next((c for c in connections if c.topic.endswith(f"/{name}")), None)


def read_trajectory(bag: str | Path) -> Trajectory:
    """Odometry and joint states of ``bag`` (a rosbag2 folder or an .mcap file)."""
    bag = Path(bag)
    if not bag.exists():
        raise ReplayError(f"{bag}: no such bag; fix: give the run's bag folder")
    typestore = default_typestore()
    joint_index = {name: i for i, name in enumerate(contract.ISAAC_JOINT_ORDER)}
    order_cache: dict[tuple[str, ...], np.ndarray | None] = {}
    odom: list[tuple[float, float, tuple[float, ...]]] = []
    joints: list[tuple[float, float, np.ndarray]] = []
    try:
        with Reader(bag) as reader:
            conns: dict[str, Connection] = {}
            for name, msgtype in _TYPES.items():
                conn = _find(reader.connections, name)
                if conn is None:
                    have = ", ".join(sorted(c.topic for c in reader.connections)) or "no topics"
                    raise ReplayError(f"{bag}: has no {name} topic ({msgtype}) (it has: {have}); fix: record {name}")
                if conn.msgtype != msgtype:
                    raise ReplayError(f"{bag}: topic {conn.topic} has type {conn.msgtype}, expected {msgtype}")
                conns[name] = conn
            odom_id = conns["odom"].id
            for conn, timestamp, raw in reader.messages(connections=list(conns.values())):
                msg = deserialize_cdr(typestore, raw, conn.msgtype)
                stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                if conn.id == odom_id:
                    p, q = msg.pose.pose.position, msg.pose.pose.orientation
                    odom.append((stamp, timestamp * 1e-9, (p.x, p.y, p.z, q.w, q.x, q.y, q.z)))
                    continue
                names = tuple(msg.name)
                if names not in order_cache:
                    where = [joint_index.get(contract.canonical_joint_name(n) or "", -1) for n in names]
                    order_cache[names] = (
                        np.array(where) if set(range(12)) <= set(where) and len(msg.position) == len(names) else None
                    )
                order = order_cache[names]
                if order is None:
                    continue  # not all of Spot's 12 leg joints: nothing to pose the model with
                q_isaac = np.empty(12)
                keep = order >= 0
                q_isaac[order[keep]] = np.asarray(msg.position, dtype=np.float64)[keep]
                joints.append((stamp, timestamp * 1e-9, q_isaac))
    except ReplayError:
        raise
    except Exception as exc:  # rosbags raises many kinds for a damaged bag; say which bag, once
        raise ReplayError(f"{bag}: cannot read the bag ({type(exc).__name__}: {exc}); fix: re-record it") from exc
    if not odom:
        raise ReplayError(f"{bag}: odom has no messages; fix: record a run")
    if not joints:
        raise ReplayError(f"{bag}: no joint_states message names all 12 leg joints; fix: record the bridge's")
    # Header stamps are the bridge's sim time; the bag's receive times only if some stamp is unset.
    use_header = all(r[0] > 0 for r in odom) and all(r[0] > 0 for r in joints)
    col = 0 if use_header else 1
    odom.sort(key=lambda r: r[col])
    joints.sort(key=lambda r: r[col])
    pose = np.array([r[2] for r in odom], dtype=np.float64)
    return Trajectory(
        odom_t=np.array([r[col] for r in odom]),
        position=pose[:, :3],
        quat_wxyz=pose[:, 3:],
        joint_t=np.array([r[col] for r in joints]),
        joint_pos=np.stack([r[2] for r in joints]),
    )


def render_video(
    bag: str | Path,
    out: str | Path,
    *,
    fps: int = FPS,
    width: int = WIDTH,
    height: int = HEIGHT,
    shadows: bool = False,
    model_path: str | Path = SPOT_MJCF,
) -> int:
    """Write an H.264 MP4 of ``bag`` to ``out``; returns the number of frames."""
    trajectory = read_trajectory(bag)
    frame_t = trajectory.frame_times(fps)
    position, quat, joint_pos = trajectory.sample(frame_t)

    model = mujoco.MjModel.from_xml_path(str(model_path))
    model.vis.quality.offsamples = 0  # multisampling costs ~2x in software rendering
    data = mujoco.MjData(model)
    base_adr = int(model.joint(_BASE_JOINT).qposadr[0])
    joint_adr = np.array([int(model.joint(name).qposadr[0]) for name in contract.ISAAC_JOINT_ORDER])

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    renderer = mujoco.Renderer(model, height, width)
    writer = imageio_ffmpeg.write_frames(
        str(out),
        (width, height),
        fps=fps,
        codec="libx264",
        quality=6,  # x264 crf 20
        output_params=["-preset", "veryfast", "-movflags", "+faststart"],
        ffmpeg_log_level="error",
    )
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = shadows
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = shadows
    writer.send(None)  # start ffmpeg
    try:
        for i in range(len(frame_t)):
            data.qpos[base_adr : base_adr + 3] = position[i]
            data.qpos[base_adr + 3 : base_adr + 7] = quat[i]
            data.qpos[joint_adr] = joint_pos[i]
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=CAMERA)
            writer.send(np.ascontiguousarray(renderer.render()))
    finally:
        writer.close()  # waits for ffmpeg to finish the file
        renderer.close()
    return len(frame_t)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spot_policy_tools.replay_video BAG OUT.mp4``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bag")
    parser.add_argument("out")
    parser.add_argument("--fps", type=int, default=FPS)
    parser.add_argument("--shadows", action="store_true", help="nicer, ~5x slower without a GPU")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        frames = render_video(args.bag, args.out, fps=args.fps, shadows=args.shadows)
    except ReplayError as exc:
        print(f"replay_video: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {frames} frames in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
