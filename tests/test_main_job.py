"""The main job, end to end: `spot-policy sim` with real processes over DDS, MuJoCo, ONNX Runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from spot_policy.core import paths
from spot_policy_tools.run_report import read_run

from policy_fixtures import make_run
from round_trip import replay_or_reason

EXE = Path(sys.executable).with_name("spot-policy")
SHIPPED = paths.config_dir() / "policies" / "spot_flat_mjx"
pytestmark = [pytest.mark.ros, pytest.mark.slow]


def run_job(out: Path, *args: str, timeout: float = 240) -> dict:
    done = subprocess.run([str(EXE), "sim", "--out", str(out), *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def stand_in_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Any valid run folder will do: the stand mode does not run the network."""
    return make_run(tmp_path_factory.mktemp("logs"))


@pytest.mark.parametrize("mode", ["lockstep", "realtime"])
def test_stand_profile_holds_the_default_pose_for_10_s(mode: str, stand_in_policy: Path, tmp_path: Path) -> None:
    extra = ["--lockstep"] if mode == "lockstep" else []
    out = tmp_path / "run"
    summary = run_job(out, "--profile", "stand", "--policy", str(stand_in_policy), "--no-video", *extra)
    assert summary["mode"] == mode and summary["passed"] and not summary["fell"]
    (segment,) = summary["segments"]
    assert segment["name"] == "stand" and segment["end_s"] - segment["start_s"] == pytest.approx(10.0, abs=0.05)
    data = read_run(out / "bag")
    t0 = summary["profile_start_sim_time_s"]
    held = (data.odom_t > t0 + 3.0) & (data.odom_t < t0 + 10.0)
    assert held.sum() > 100
    heights = data.position[held, 2]
    logs = "\n".join((out / "logs" / f"{n}.log").read_text()[-1500:] for n in ("sim_bridge", "policy_node"))
    # Standing, level and still. Two stances are physically right here: the stand mode starts from
    # the *measured* pose, and under Isaac Lab's soft gains (kp 60) a robot that has already sagged
    # when the profile starts is first commanded lower, its feet slide out, and it ends wider and
    # lower (~0.35 m) than one that starts during the drop from the reset height (~0.43 m).
    assert heights.min() > 0.33 and heights.max() < 0.47, (
        f"height {heights.min():.3f}..{heights.max():.3f} m at t-t0 "
        f"{data.odom_t[held][heights.argmin()] - t0:.2f} s (t0 {t0:.3f})\n{logs}"
    )
    assert np.all(data.gravity_z[held] < -0.99)
    # The compliant stance creeps a few cm while it settles after the drop; still by the end (below).
    assert np.ptp(data.position[held, 0]) < 0.10 and np.ptp(data.position[held, 1]) < 0.10
    last = (data.odom_t > t0 + 8.0) & (data.odom_t < t0 + 10.0)
    # Still: under 1 cm/s of creep over the last 2 s (the soft stance keeps settling slowly).
    assert np.ptp(data.position[last, 0]) < 0.02 and np.ptp(data.position[last, 1]) < 0.02
    assert np.ptp(data.position[last, 2]) < 0.005
    for name in ("bag/metadata.yaml", "tracking.png", "logs/sim_bridge.log", "logs/policy_node.log"):
        assert (out / name).is_file(), name
    # The bag holds the contract topics the run publishes and the policy node's debug stream.
    with Reader(out / "bag") as reader:
        topics = {c.topic for c in reader.connections}
    contract_topics = {"/joint_states", "/imu/data", "/odom", "/cmd_vel", "/joint_command", "/diagnostics", "/clock"}
    debug_topics = {f"/policy_node/{n}" for n in ("step", "events")}  # observation/action: walk steps only
    assert contract_topics | debug_topics | {"/profile/segment"} <= topics, topics
    # Record now, replay now: exactly in lockstep; in real time exactly, or the replay names the
    # best-effort sensor message the recorder lost (never a silent wrong comparison).
    report = replay_or_reason(out / "bag", exact=mode == "lockstep")
    assert report is None or (report.passed and report.steps > 400), report.first_divergence


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="the walking policy config/policies/spot_flat_mjx is not shipped yet")
def test_shipped_policy_walks_the_default_profile(tmp_path: Path) -> None:
    summary = run_job(tmp_path / "run", "--lockstep", timeout=400)
    assert not summary["fell"]
    moving = [s for s in summary["segments"] if s["moving"]]
    assert [s["name"] for s in moving] == ["forward", "turn", "sidestep"]
    for s in moving:
        assert s["tracking_error"]["vxy_m_s"] <= 0.10, s
        assert s["tracking_error"]["wz_rad_s"] <= 0.15, s
    assert (tmp_path / "run" / "video.mp4").stat().st_size > 10_000
    report = replay_or_reason(tmp_path / "run" / "bag", exact=True)  # the recorded policy, found by the bag
    assert report is not None and report.passed and report.walk_steps > 500, report.first_divergence
