"""The live view (``spot-policy sim --foxglove``) driven by Foxglove's own client libraries.

The sim bridge (lockstep), the policy node (the shipped policy) and the live view run as processes
over DDS; ``tests/foxglove_client/drive.mjs`` (Foxglove's WebSocket protocol client and ROS 2 CDR
codec from npm, installed by scripts/setup) subscribes, decodes the robot description and the
transforms from the schemas the server advertises, calls stand and walk, and publishes cmd_vel as
the Teleop panel does; the policy must walk forward.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from spot_policy.ros import bringup
from spot_policy_tools.launcher import NodeGroup, follow, wait_for
from spot_sim_bridge.model import robot_description

pytestmark = pytest.mark.ros
CLIENT = Path(__file__).resolve().parent / "foxglove_client"
WALK_S = 6.0  # wall seconds of cmd_vel; lockstep runs several times faster than real time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def node_client() -> list[str]:
    node = shutil.which("node")
    if node is None or not (CLIENT / "node_modules" / "@foxglove" / "ws-protocol").is_dir():
        pytest.fail("Node.js or the Foxglove client libraries are missing; fix: run scripts/setup (needs npm)")
    return [node, str(CLIENT / "drive.mjs")]


def test_foxglove_client_sees_the_robot_and_drives_it(tmp_path: Path, node_client: list[str]) -> None:
    port = free_port()
    specs = bringup.sim_nodes("spot_flat_mjx", realtime=False, teleop=False)
    specs.append(bringup.live_view(port=port, extra={"cmd_vel_rate_hz": 100.0}))
    group = NodeGroup(tmp_path / "logs")
    try:
        for spec in specs:
            group.start(spec)
        view_log = tmp_path / "logs" / "live_view.log"
        served = wait_for(lambda: group.failed() or f"ws://127.0.0.1:{port}" in view_log.read_text(), timeout=60)
        assert served and group.failed() is None, "\n".join(follow(view_log, 0)[0][-15:])
        result = subprocess.run(
            [*node_client, f"ws://127.0.0.1:{port}", str(WALK_S), "0.5"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert group.failed() is None, f"{group.failed().name} exited:\n{group.failed().tail(15)}"
    finally:
        group.stop()
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines else {"errors": [result.stderr[-2000:]]}
    assert result.returncode == 0, f"client failed: {summary['errors']}"

    # The robot model and its frames, decoded by Foxglove's CDR reader from the advertised schemas.
    assert summary["robot_description"] == robot_description()
    frames = summary["frames"]
    assert frames["body"] == "odom" and frames["base_link"] == "body" and frames["imu"] == "body"
    for leg in ("fl", "fr", "hl", "hr"):
        assert (frames[f"{leg}_hip"], frames[f"{leg}_uleg"], frames[f"{leg}_lleg"]) == (
            "body",
            f"{leg}_hip",
            f"{leg}_uleg",
        )
        assert frames[f"{leg}_foot"] == f"{leg}_lleg"
    assert summary["tf_messages"] > 10 and summary["odom_messages"] > 10
    assert {"clientPublish", "services"} <= set(summary["server"]["capabilities"])
    assert summary["services"]["/policy_node/stand"]["success"] is True
    assert summary["services"]["/policy_node/walk"]["success"] is True

    # odom -> body in /tf is the odometry pose of its instant: the odometry at that stamp, or between
    # the two odometry messages around it (each topic is thinned on its own; the walk is smooth).
    after = summary["odom_after"]
    body, odom_a, odom_b = (summary["body_with_odom"][k] for k in ("body", "before", "after"))
    span = odom_b["stamp"] - odom_a["stamp"]
    w = 0.0 if span == 0 else (body["stamp"] - odom_a["stamp"]) / span
    print(f"body frame at {body['stamp']:.3f} s, odometry at {odom_a['stamp']:.3f} and {odom_b['stamp']:.3f} s")
    for axis in ("x", "y", "z"):
        expected = (1 - w) * odom_a[axis] + w * odom_b[axis]
        assert body[axis] == pytest.approx(expected, abs=1e-9 if span == 0 else 0.02 + 0.1 * span), axis

    # The client's cmd_vel (0.5 m/s forward) made the policy walk forward: the body-frame velocity
    # /odom carried while it was sent. (Not the displacement in the odometry frame: lockstep runs as
    # fast as it can, so the walk lasts 60-160 s of sim time as the machine allows, and a slow yaw
    # drift curves a long walk: once 62 m forward and 37 m sideways in 164 s.)
    before = summary["odom_before"]
    walked = math.hypot(after["x"] - before["x"], after["y"] - before["y"])
    sim_s = after["stamp"] - before["stamp"]
    twist = summary["walk_twist"]
    print(
        f"cmd_vel 0.5 m/s from the client: {twist['vx']:.2f} m/s forward, {twist['vy']:+.2f} m/s sideways "
        f"(body frame, {twist['n']} odometry messages); {walked:.1f} m in {sim_s:.1f} s"
    )
    assert sim_s > 2.0 and twist["n"] >= 10
    assert twist["vx"] > 0.3 * 0.5 and abs(twist["vy"]) < 0.5 * twist["vx"], twist
    assert walked > 0.3 * sim_s * 0.5, f"walked {walked:.2f} m in {sim_s:.1f} s of sim time"
    assert after["z"] > 0.3  # still standing
