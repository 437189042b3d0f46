"""Physics backends behind :class:`spot_sim_bridge.core.backend.SimBackend`: MuJoCo (embedded) and Isaac Sim. No ROS."""
