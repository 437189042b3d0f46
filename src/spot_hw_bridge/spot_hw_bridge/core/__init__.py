"""The robot bridge's core: bosdyn-client start-up, streaming and watchdogs, SDK conversions, errors. No ROS."""
