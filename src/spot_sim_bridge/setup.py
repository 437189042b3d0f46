"""ament_python package `spot_sim_bridge`: the simulator bridge node and its physics backends."""

from pathlib import Path

from setuptools import setup

PACKAGE = "spot_sim_bridge"
HERE = Path(__file__).resolve().parent

setup(
    name=PACKAGE,
    python_requires=">=3.10",  # here, not in setup.cfg: colcon reads setup() keywords as literals
    package_data={PACKAGE: ["model/*.xml", "model/*.csv", "model/*.urdf"]},
    install_requires=["setuptools", "numpy", "mujoco"],
    entry_points={"console_scripts": ["sim_bridge = spot_sim_bridge.ros.sim_bridge_node:main"]},
)
