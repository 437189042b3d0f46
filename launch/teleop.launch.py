"""Gamepad teleop for a running policy node: joy_node + teleop (shared by the sim and robot set-ups).

ros2 launch spot_policy teleop.launch.py [mapping:=ps4|xbox|/path/pad.yaml] [use_sim_time:=false]
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from spot_policy import bringup


def _nodes(context):
    sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() in ("true", "1", "yes")
    teleop = bringup.teleop_node(sim_time)
    overrides = {**teleop.overrides, "mapping": LaunchConfiguration("mapping").perform(context)}
    joy = bringup.joy_node()
    return [
        Node(package=joy.package, executable=joy.executable, name=joy.name, parameters=[joy.overrides]),
        Node(
            package=teleop.package,
            executable=teleop.executable,
            name=teleop.name,
            parameters=[*map(str, teleop.param_paths()), overrides],
            output="screen",
        ),
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument("mapping", default_value="ps4", description="pad mapping in config/teleop"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock"),
            OpaqueFunction(function=_nodes),
        ]
    )
