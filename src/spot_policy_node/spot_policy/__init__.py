"""Run Isaac Lab Spot locomotion policies over ROS 2."""
