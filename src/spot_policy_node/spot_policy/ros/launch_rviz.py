"""``rviz:=true`` of the launch files: RViz2 with the shipped config, where RViz2 is installed.

Only ``ros2 launch`` imports this. RViz2 shows what the bridges publish: the robot model from
``robot_description``, its frames from ``/tf`` and ``/tf_static``, the odometry and the IMU.
"""

from __future__ import annotations

import shutil

from launch.actions import LogInfo
from launch_ros.actions import Node

from spot_policy.core import paths
from spot_policy.ros.bringup import find_executable

RVIZ_CONFIG = "rviz/spot.rviz"


def rviz(enabled: bool) -> list:
    """The RViz2 node with ``config/rviz/spot.rviz``, or one line saying why there is none."""
    if not enabled:
        return []
    config = paths.config_dir() / RVIZ_CONFIG
    if find_executable("rviz2", "rviz2") is None and shutil.which("rviz2") is None:
        return [
            LogInfo(
                msg="rviz:=true: rviz2 is not installed (sudo apt install ros-$ROS_DISTRO-rviz2); "
                f"its config is {config}. Without ROS: spot-policy sim --foxglove and the Foxglove app"
            )
        ]
    return [Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", str(config)], output="screen")]
