"""Gamepad teleop for a running policy node: joy_node + teleop (shared by the sim and robot set-ups).

ros2 launch spot_policy teleop.launch.py [mapping:=ps4|xbox|/path/pad.yaml] [use_sim_time:=false]
"""

from dataclasses import replace

from launch.actions import OpaqueFunction

from launch import LaunchDescription
from spot_policy.ros import bringup
from spot_policy.ros.launch_actions import declare, flag, node_actions, values

ARGUMENTS = {
    "mapping": ("ps4", "pad mapping in config/teleop (ps4, xbox) or a path to your own YAML"),
    "use_sim_time": ("false", "follow /clock"),
}


def _nodes(context):
    arg = values(context, ARGUMENTS)
    teleop = bringup.teleop_node(flag(arg["use_sim_time"]))
    teleop = replace(teleop, overrides={**teleop.overrides, "mapping": arg["mapping"]})
    return node_actions([bringup.joy_node(), teleop])


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*declare(ARGUMENTS), OpaqueFunction(function=_nodes)])
