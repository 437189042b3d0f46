"""The launch files' one piece of code: bring-up specs to launch_ros actions, arguments to values.

Only ``ros2 launch`` imports this (it needs the ``launch`` and ``launch_ros`` packages of a ROS
installation); ``spot-policy`` starts the same specs as processes without them.
"""

from __future__ import annotations

from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.launch_context import LaunchContext
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from spot_policy.ros import bringup

#: name -> (default, description) of a launch file's arguments.
Arguments = dict[str, tuple[str, str]]


def declare(arguments: Arguments) -> list[DeclareLaunchArgument]:
    return [DeclareLaunchArgument(n, default_value=d, description=h) for n, (d, h) in arguments.items()]


def values(context: LaunchContext, arguments: Arguments) -> dict[str, str]:
    """Each argument's value as given on the command line (or its default)."""
    return {name: LaunchConfiguration(name).perform(context) for name in arguments}


def flag(text: str) -> bool:
    return text.lower() in ("true", "1", "yes")


def node_actions(specs: list[bringup.NodeSpec], record_dir: str | None = None, sim_time: bool = True) -> list:
    """A ``Node`` action per spec (its parameter files, then its overrides), plus the recording.

    ``record_dir``: record the contract topics there, with ``ros2 bag record`` where rosbag2 is
    installed, else with the project's recorder node.
    """
    bag = bringup.bag_record_command(record_dir, sim_time=sim_time) if record_dir else None
    if record_dir and bag is None:
        specs = [*specs, bringup.recorder(record_dir, sim_time=sim_time)]
    actions: list = [
        Node(
            package=s.package,
            executable=s.executable,
            name=s.name,
            parameters=[*map(str, s.param_paths()), s.overrides],
            output="screen",
        )
        for s in specs
    ]
    if bag is not None:
        actions.append(ExecuteProcess(cmd=bag, output="screen"))
    return actions
