"""The launch files' one piece of code: bring-up specs to launch_ros actions, arguments to values.

Only ``ros2 launch`` imports this (it needs the ``launch`` and ``launch_ros`` packages of a ROS
installation); ``spot-policy`` starts the same specs as processes without them.
"""

from __future__ import annotations

from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, LogInfo
from launch.events import Shutdown
from launch.events.process import ProcessExited
from launch.launch_context import LaunchContext
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from spot_policy.ros import bringup

#: name -> (default, description) of a launch file's arguments.
Arguments = dict[str, tuple[str, str]]
#: The arguments both bring-ups (sim.launch.py, robot.launch.py) take.
BRINGUP_ARGUMENTS: Arguments = {
    "policy": ("spot_flat_mjx", "run folder, exported/policy.onnx, or a policy shipped in config/policies"),
    "teleop": ("true", "teleop: cmd_vel from a gamepad while its dead-man is held (false: cmd_vel from elsewhere)"),
    "joy": ("false", "also start joy_node (package joy) for a gamepad"),
    "record": ("false", "record the contract and debug topics to an MCAP bag (ros2 bag, else the recorder)"),
    "record_dir": ("runs/bag", "bag folder when record:=true"),
    "rviz": ("false", "start RViz2 with config/rviz/spot.rviz (where rviz2 is installed)"),
}


def declare(arguments: Arguments) -> list[DeclareLaunchArgument]:
    return [DeclareLaunchArgument(n, default_value=d, description=h) for n, (d, h) in arguments.items()]


def values(context: LaunchContext, arguments: Arguments) -> dict[str, str]:
    """Each argument's value as given on the command line (or its default)."""
    return {name: LaunchConfiguration(name).perform(context) for name in arguments}


def flag(text: str) -> bool:
    return text.lower() in ("true", "1", "yes")


class RequiredNodeFailed(RuntimeError):
    """A node the bring-up cannot run without exited with an error: ``ros2 launch`` ends with status 1."""


def _on_required_exit(event: ProcessExited, context: LaunchContext) -> list | None:
    """A required node (``NodeSpec.required``) ended: stop everything, and fail when it failed.

    ``ros2 launch`` returns a non-zero status only when an exception reaches its event loop, so a
    failed node raises one here (launch then shuts the others down and exits 1: a systemd unit
    shows failed). During a shutdown already under way (Ctrl-C) an exit is expected.
    """
    if context.is_shutdown:
        return None
    reason = f"{event.action.name} exited with status {event.returncode}: the system cannot run without it"
    if event.returncode != 0:
        raise RequiredNodeFailed(reason)
    return [EmitEvent(event=Shutdown(reason=reason))]


def node_actions(specs: list[bringup.NodeSpec], record_dir: str | None = None, sim_time: bool = True) -> list:
    """A ``Node`` action per spec (its parameter files, then its overrides), plus the recording.

    ``record_dir``: record the contract topics there, with ``ros2 bag record`` where rosbag2 and its
    MCAP plugin are installed, else with the project's recorder node (and a line saying so).
    """
    actions: list = []
    bag = bringup.bag_record_command(record_dir, sim_time=sim_time) if record_dir else None
    if record_dir:
        specs = bringup.awaiting_recorder(specs)
    if record_dir and bag is None:
        specs = [*specs, bringup.recorder(record_dir, sim_time=sim_time)]
        actions.append(LogInfo(msg="record: ros2 bag (rosbag2 with rosbag2_storage_mcap) is not installed; "
                                   "recording with spot_policy's recorder node instead"))  # fmt: skip
    actions += [
        Node(
            package=s.package,
            executable=s.executable,
            name=s.name,
            parameters=[*map(str, s.param_paths()), s.overrides],
            output="screen",
            on_exit=_on_required_exit if s.required else None,
        )
        for s in specs
    ]
    if bag is not None:
        actions.append(ExecuteProcess(cmd=bag, output="screen"))
    return actions
