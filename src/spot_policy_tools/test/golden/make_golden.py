"""Regenerate the golden bags that ``test_replay.py`` replays (each must stay under 2 MB).

    .venv/bin/python src/spot_policy_node/test/golden/make_golden.py [sim_default stale_imu ...]

Without names, every bag is rewritten. The bags (rosbag2 folders: ``metadata.yaml`` + one MCAP):

- ``sim_default``: ``spot-policy sim --lockstep --profile default`` with the fixture policy below:
  MuJoCo, the sim bridge, the policy node (input trigger), the profile player and the recorder
  as separate processes over DDS, 15 s of simulated time.
- ``robot_emulator``: ``spot-policy robot --emulator`` with the fixture policy: stand 2 s, walk 6 s.
- ``stale_imu``, ``nan_joint_states``, ``lost_cmd_vel``: the real policy node (timer trigger, sim
  time) driven over DDS by a scripted bridge (clock and state at 100 Hz, cmd_vel at 10 Hz, the
  mode services), recorded by the in-project recorder node, all in this process.

Then each bag is rewritten without ``diagnostics`` (wall-clock figures, not replayed) and with
zstd-compressed MCAP chunks: ``spot_policy.ros.bag_recorder.copy_bag``. ``policy/`` is the fixture
policy: an Isaac Lab run folder with a random 48-64-12 MLP (seed 7), written once if missing.

Regenerate after an intended change of the controller's behaviour (the replay tests then fail
on the old bags, at the first step that changed), and commit the bags with the change.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEST_DIR = HERE.parents[2] / "spot_policy_node" / "test"  # the shared test helpers (policy_fixtures, ros_harness)
POLICY = HERE / "policy"
SCRIPTED = ("stale_imu", "nan_joint_states", "lost_cmd_vel")
ALL = ("sim_default", "robot_emulator", *SCRIPTED)
STATE_DT = 0.01  # s of sim time between state messages (100 Hz)
T0 = 100.0  # sim time at the start of a scripted run


def write_policy() -> None:
    """The fixture policy, committed beside the bags (deterministic: seeded weights)."""
    sys.path.insert(0, str(TEST_DIR))
    from spot_policy.core.onnx_mlp import random_mlp

    from policy_fixtures import make_run

    make_run(HERE, name=POLICY.name, layers=random_mlp((48, 64, 12), seed=7, gain=0.5))
    for checkpoint in POLICY.glob("model_*.pt"):
        checkpoint.unlink()  # deployment never reads them


def compact(src: Path, name: str, into: Path = HERE) -> Path:
    """``src`` rewritten into ``<into>/<name>`` (default: golden/): no diagnostics, zstd chunks."""
    from spot_policy.ros.bag_recorder import copy_bag

    dst = into / name
    shutil.rmtree(dst, ignore_errors=True)
    counts = copy_bag(src, dst, keep=lambda topic: not topic.endswith("diagnostics"))
    size = sum(f.stat().st_size for f in dst.iterdir())
    print(f"{name}: {sum(counts.values())} messages, {size / 1e6:.2f} MB")
    if size > 2_000_000:
        raise SystemExit(f"{name} is {size / 1e6:.2f} MB, over the 2 MB a golden bag may have")
    return dst


def make_sim_default(work: Path) -> None:
    out = work / "sim_default"
    cmd = [sys.executable, "-m", "spot_policy_tools.cli", "sim", "--lockstep", "--profile", "default"]
    subprocess.run([*cmd, "--policy", str(POLICY), "--out", str(out), "--no-video"], check=True)
    compact(out / "bag", "sim_default")


#: The robot path's profile: the stand (from Spot's own stand the node leaves the robot to it: nothing
#: to replay), then the hand-over to the policy and a walk.
ROBOT_PROFILE = """\
name: robot_golden
settle_s: 1.0
segments:
  - {name: stand, mode: stand, duration: 2.0}
  - {name: start, mode: walk, duration: 2.0, cmd_vel: [0.0, 0.0, 0.0]}
  - {name: walk, mode: walk, duration: 4.0, cmd_vel: [0.3, 0.0, 0.0]}
"""


def make_robot_emulator(work: Path) -> None:
    """The robot path: hw bridge + policy node against the Spot API emulator: stand, then walk."""
    out = work / "robot_emulator"
    profile = work / "robot_golden.yaml"
    profile.write_text(ROBOT_PROFILE)
    cmd = [sys.executable, "-m", "spot_policy_tools.cli", "robot", "--emulator", "--profile", str(profile)]
    subprocess.run([*cmd, "--policy", str(POLICY), "--out", str(out), "--no-video"], check=True)
    compact(out / "bag", "robot_emulator")


def make_scripted(work: Path, case: str, compact_into: Path = HERE) -> None:
    """One fault case: stand, walk with a varying cmd_vel, then the fault; recorded over DDS.

    Needs rclpy not yet initialised in this process's default context (it inits and shuts it down).
    """
    import numpy as np
    import rclpy
    from builtin_interfaces.msg import Time
    from nav_msgs.msg import Odometry
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Imu, JointState

    from spot_policy.core import contract
    from spot_policy.ros.policy_node import PolicyNode
    from spot_policy.ros.recorder_node import RecorderNode

    sys.path.insert(0, str(TEST_DIR))
    from ros_harness import BridgeHarness, Spinner, wait_until

    bag = work / case
    rclpy.init()
    node = PolicyNode(
        parameter_overrides=[
            Parameter("policy", value=str(POLICY)),
            Parameter("providers", value=["cpu"]),
            Parameter("trigger", value="timer"),
            Parameter("use_sim_time", value=True),
            Parameter("stand_duration_s", value=0.3),
            Parameter("soft_start_s", value=0.2),
        ]
    )
    recorder = RecorderNode(
        parameter_overrides=[Parameter("out", value=str(bag)), Parameter("use_sim_time", value=True)]
    )
    h = BridgeHarness()
    spin = Spinner(node, recorder, h)
    try:
        assert wait_until(
            lambda: (
                all(p.get_subscription_count() >= 2 for p in (h.js_pub, h.imu_pub, h.odom_pub, h.cmd_pub))
                and node.command_pub.get_subscription_count() >= 2
                and all(
                    p.get_subscription_count() >= 1
                    for p in (node.step_pub, node.obs_pub, node.action_pub, node.events_pub)
                )
            ),
            timeout=20,
        ), "DDS discovery did not complete"
        spec = node.loaded.spec
        order = contract.index_map(contract.ISAAC_JOINT_ORDER, contract.SDK_JOINT_ORDER)

        def state(t: float, imu: bool = True, nan: bool = False) -> None:
            """Clock, then imu, odom and joint_states at ``t``: a gently swaying robot."""
            sec = int(np.floor(t))
            stamp = Time(sec=sec, nanosec=round((t - sec) * 1e9))
            h.publish_clock(t)
            phase = 2.0 * np.pi * 1.5 * (t - T0)
            q = spec.default_joint_pos + 0.05 * np.sin(phase + np.arange(12))
            dq = 0.05 * 2.0 * np.pi * 1.5 * np.cos(phase + np.arange(12))
            if imu:
                msg = Imu()
                msg.header.stamp, msg.header.frame_id = stamp, contract.FRAME_BASE
                half = 0.5 * 0.05 * np.sin(phase)  # roll sway
                msg.orientation.x, msg.orientation.w = float(np.sin(half)), float(np.cos(half))
                msg.angular_velocity.x, msg.angular_velocity.z = float(0.1 * np.cos(phase)), 0.05
                h.imu_pub.publish(msg)
            odom = Odometry()
            odom.header.stamp, odom.header.frame_id = stamp, contract.FRAME_ODOM
            odom.child_frame_id = contract.FRAME_BASE
            odom.pose.pose.orientation.w = 1.0
            odom.twist.twist.linear.x, odom.twist.twist.linear.y = float(0.3 + 0.05 * np.sin(phase)), -0.02
            h.odom_pub.publish(odom)
            js = JointState()
            js.header.stamp = stamp
            js.name = list(contract.SDK_JOINT_ORDER)
            js.position = [float(v) for v in q[order]]
            if nan:
                js.position[2] = float("nan")  # fl_kn
            js.velocity = [float(v) for v in dq[order]]
            js.effort = [0.0] * 12
            h.js_pub.publish(js)
            time.sleep(0.004)

        t = T0
        h.publish_clock(t)
        time.sleep(0.2)
        duration = {"stale_imu": 1.6, "nan_joint_states": 1.9, "lost_cmd_vel": 2.2}[case]
        called: set[str] = set()

        def once(name: str, service: str, expect: bool = True) -> None:
            if name not in called:
                called.add(name)
                response = h.call(service)
                assert response.success == expect, (name, response.message)

        while t < T0 + duration - 1e-9:
            t = round(t + STATE_DT, 6)
            rel = t - T0
            fault_on = rel >= 1.2
            state(t, imu=not (case == "stale_imu" and fault_on), nan=case == "nan_joint_states" and 1.2 <= rel < 1.21)
            if rel >= 0.3 and round(rel * 100) % 10 == 0 and not (case == "lost_cmd_vel" and rel >= 1.0):
                h.send_cmd_vel(0.4 + 0.2 * (rel > 0.8), 0.1, 0.3 * (rel > 1.0))
            if rel >= 0.05:
                once("stand", "stand")
            if rel >= 0.45:
                once("walk", "walk")
            if case == "stale_imu" and rel >= 1.45:
                once("walk again", "walk", expect=False)  # refused: in fault
            if case == "nan_joint_states" and rel >= 1.4:
                once("reset", "reset")
            if case == "nan_joint_states" and rel >= 1.5:
                once("stand again", "stand")
        time.sleep(0.3)
    finally:
        spin.close()
        recorder.close()
        for n in (node, recorder, h):
            n.destroy_node()
        rclpy.shutdown()
    compact(bag, case, compact_into)


def main(argv: list[str]) -> int:
    names = argv or list(ALL)
    unknown = [n for n in names if n not in ALL]
    if unknown:
        print(f"unknown bag(s) {unknown}; choose from {', '.join(ALL)}", file=sys.stderr)
        return 2
    if not (POLICY / "exported" / "policy.onnx").is_file():
        write_policy()
    from spot_policy.ros.dds_isolation import claim_domain

    claim_domain()  # before rclpy: a domain of our own
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        for name in names:
            if name == "sim_default":
                make_sim_default(Path(tmp))
            elif name == "robot_emulator":
                make_robot_emulator(Path(tmp))
            else:
                make_scripted(Path(tmp), name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
