"""The shipped RViz2 config and Foxglove layout point at what the bridges and the live view publish."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from spot_policy.core import contract
from spot_policy.ros.live_view_node import ACTIONS, SERVED

CONFIG = Path(__file__).resolve().parents[1] / "config"


def _displays(rviz: dict) -> dict[str, dict]:
    return {d["Class"].split("/")[-1]: d for d in rviz["Visualization Manager"]["Displays"]}


def test_rviz_config_shows_the_robot_its_frames_and_odometry() -> None:
    rviz = yaml.safe_load((CONFIG / "rviz" / "spot.rviz").read_text())
    manager = rviz["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == contract.FRAME_ODOM
    displays = _displays(rviz)
    model = displays["RobotModel"]
    assert model["Description Source"] == "Topic"
    assert model["Description Topic"]["Value"] == "/" + contract.TOPIC_ROBOT_DESCRIPTION
    assert model["Description Topic"]["Durability Policy"] == "Transient Local"  # the bridges latch it
    assert displays["TF"]["Enabled"] is True
    odometry = displays["Odometry"]["Topic"]
    assert odometry["Value"] == "/" + contract.TOPIC_ODOM and odometry["Reliability Policy"] == "Best Effort"
    assert displays["Grid"]["Reference Frame"] == contract.FRAME_ODOM
    view = manager["Views"]["Current"]
    assert view["Class"].endswith("ThirdPersonFollower") and view["Target Frame"] == contract.FRAME_BODY


def test_foxglove_layout_uses_only_what_the_live_view_serves() -> None:
    layout = json.loads((CONFIG / "foxglove" / "spot.json").read_text())
    panels = layout["configById"]
    served = {"/" + t.topic.lstrip("/") for t in SERVED}

    def leaves(node) -> list[str]:
        return [node] if isinstance(node, str) else leaves(node["first"]) + leaves(node["second"])

    assert sorted(leaves(layout["layout"])) == sorted(panels)  # every panel placed, none missing
    scene = panels["3D!spot"]
    assert scene["followTf"] == contract.FRAME_BODY and "/robot_description" in scene["topics"]
    assert set(scene["topics"]) <= served
    plotted = [p["value"] for key, cfg in panels.items() if key.startswith("Plot!") for p in cfg["paths"]]
    assert {p.split(".")[0] for p in plotted} <= served
    assert "/cmd_vel.linear.x" in plotted and "/odom.twist.twist.linear.x" in plotted  # commanded vs achieved
    for entry in panels["Plot!joints"]["paths"]:  # joint indices: the sim bridge's (Isaac) joint order
        index = int(re.search(r"\[(\d+)\]", entry["value"])[1])
        assert entry["label"].startswith(contract.ISAAC_JOINT_ORDER[index])
    assert panels["Teleop!drive"]["topic"] == "/" + contract.TOPIC_CMD_VEL
    services = {cfg["serviceName"] for key, cfg in panels.items() if key.startswith("CallService!")}
    assert services == {f"/policy_node/{a}" for a in ACTIONS}
    assert panels["DiagnosticSummary!diag"]["topicToRender"] in served
