"""Spot in a simulator: sim bridge + policy node + teleop (+ joy_node, + recording).

    ros2 launch spot_policy sim.launch.py [policy:=spot_flat_mjx] [backend:=mujoco] [realtime:=true]
        [gui:=false] [teleop:=true] [joy:=false] [record:=false] [record_dir:=runs/bag]

The node set and parameter files come from spot_policy.ros.bringup, the same description that
`spot-policy sim` starts without ros2 launch.
"""

from launch.actions import OpaqueFunction

from launch import LaunchDescription
from spot_policy.ros import bringup, launch_actions
from spot_policy.ros.launch_actions import declare, flag, node_actions, values
from spot_policy.ros.launch_rviz import rviz

ARGUMENTS = {
    "backend": ("mujoco", "physics backend of the sim bridge"),
    "realtime": ("true", "true: paced to the wall clock; false: lockstep, as fast as possible"),
    "gui": ("false", "open the simulator's viewer window (needs a display)"),
    **launch_actions.BRINGUP_ARGUMENTS,
}


def _nodes(context):
    arg = values(context, ARGUMENTS)
    specs = bringup.sim_nodes(
        arg["policy"],
        arg["backend"],
        flag(arg["realtime"]),
        flag(arg["gui"]),
        teleop=flag(arg["teleop"]),
        joy=flag(arg["joy"]),
    )
    record = arg["record_dir"] if flag(arg["record"]) else None
    return [*node_actions(specs, record, sim_time=True), *rviz(flag(arg["rviz"]))]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*declare(ARGUMENTS), OpaqueFunction(function=_nodes)])
