"""Spot in a simulator: sim bridge + policy node + teleop (+ joy_node, + recording).

    ros2 launch spot_policy sim.launch.py [policy:=spot_flat_mjx] [backend:=mujoco] [realtime:=true]
        [gui:=false] [joy:=false] [record:=false] [record_dir:=runs/bag]

The node set and parameter files come from spot_policy.bringup, the same description that
`spot-policy sim` starts without ros2 launch.
"""

from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from spot_policy import bringup

ARGUMENTS = {
    "policy": ("spot_flat_mjx", "run folder, exported/policy.onnx, or a policy shipped in config/policies"),
    "backend": ("mujoco", "physics backend of the sim bridge"),
    "realtime": ("true", "true: paced to the wall clock; false: lockstep, as fast as possible"),
    "gui": ("false", "open the simulator's viewer window (needs a display)"),
    "joy": ("false", "also start joy_node (package joy) for a gamepad"),
    "record": ("false", "record the contract and debug topics to an MCAP bag (ros2 bag, else the recorder)"),
    "record_dir": ("runs/bag", "bag folder when record:=true"),
}


def _nodes(context):
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    on = {name: arg[name].lower() in ("true", "1", "yes") for name in arg}
    specs = bringup.sim_nodes(arg["policy"], arg["backend"], on["realtime"], on["gui"], teleop=True, joy=on["joy"])
    bag = bringup.bag_record_command(arg["record_dir"]) if on["record"] else None
    if on["record"] and bag is None:
        specs.append(bringup.recorder(arg["record_dir"]))
    actions = [
        Node(
            package=s.package,
            executable=s.executable,
            name=s.name,
            parameters=[*map(str, s.param_paths()), s.overrides],
            output="screen",
        )
        for s in specs
    ]
    if bag is not None:  # ros2 bag record, where rosbag2 is installed
        actions.append(ExecuteProcess(cmd=bag, output="screen"))
    return actions


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(n, default_value=d, description=h) for n, (d, h) in ARGUMENTS.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
