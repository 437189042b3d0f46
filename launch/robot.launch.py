"""Spot itself (or the Spot API emulator): hw bridge + policy node + teleop (+ joy_node, + recording).

    export BOSDYN_CLIENT_USERNAME=... BOSDYN_CLIENT_PASSWORD=...   # never launch arguments
    ros2 launch spot_policy robot.launch.py hostname:=192.168.50.3 [policy:=spot_flat_mjx]
        [teleop:=true] [joy:=true] [record:=false] [record_dir:=runs/bag] [port:=443] [ca_cert:=]

A dry run against `spot-policy emulator`: hostname:=127.0.0.1 port:=<its port> ca_cert:=<its ca.pem>.
The node set and parameter files come from spot_policy.ros.bringup, the same description that
`spot-policy robot` starts without ros2 launch; the policy node is the simulation's.
"""

from launch.actions import OpaqueFunction

from launch import LaunchDescription
from spot_policy.ros import bringup, launch_actions
from spot_policy.ros.launch_actions import declare, flag, node_actions, values
from spot_policy.ros.launch_rviz import rviz

ARGUMENTS = {
    "hostname": ("", "robot address (empty: hw_bridge.yaml, then $SPOT_IP)"),
    "port": ("443", "robot API port (the emulator prints its own)"),
    "ca_cert": ("", "robot CA certificate (empty: the SDK's Boston Dynamics CA; the emulator prints its ca.pem)"),
    **launch_actions.BRINGUP_ARGUMENTS,
}


def _nodes(context):
    arg = values(context, ARGUMENTS)
    bridge = {"port": int(arg["port"]), "ca_cert": arg["ca_cert"]}
    specs = bringup.robot_nodes(
        arg["policy"], arg["hostname"], teleop=flag(arg["teleop"]), joy=flag(arg["joy"]), extra_bridge_params=bridge
    )
    record = arg["record_dir"] if flag(arg["record"]) else None
    return [*node_actions(specs, record, sim_time=False), *rviz(flag(arg["rviz"]))]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*declare(ARGUMENTS), OpaqueFunction(function=_nodes)])
