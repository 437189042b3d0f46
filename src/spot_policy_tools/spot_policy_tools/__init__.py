"""Tools above the three ROS packages: the ``spot-policy`` CLI, jobs, bench, replay and run reports.

They may import any layer of ``spot_policy``, ``spot_sim_bridge`` and ``spot_hw_bridge``; nothing in
those packages imports from here.
"""
