"""The sim bridge's core: the backend interface, actuation, timing modes and command-loss rules. No ROS."""
