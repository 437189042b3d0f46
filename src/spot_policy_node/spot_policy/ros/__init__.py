"""The ROS adapters: rclpy nodes that move messages in and out of the core, and their DDS plumbing.

May import the core and rclpy; never the tools (``spot_policy_tools``).
"""
