"""ament_python package `spot_sim_bridge`: the simulator bridge node and its physics backends."""

import os
from pathlib import Path

from setuptools import find_packages, setup

# `ros2 run` finds executables in lib/<package>; a pip install into a virtual environment (the
# README's set-up, which sets SPOT_POLICY_PIP_LAYOUT=1) wants them on its bin/ instead.
ROS_LAYOUT = os.environ.get("SPOT_POLICY_PIP_LAYOUT") != "1"

PACKAGE = "spot_sim_bridge"
HERE = Path(__file__).resolve().parent

setup(
    name=PACKAGE,
    options=(
        {"develop": {"script_dir": f"$base/lib/{PACKAGE}"}, "install": {"install_scripts": f"$base/lib/{PACKAGE}"}}
        if ROS_LAYOUT
        else {}
    ),
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={PACKAGE: ["model/*.xml", "model/*.csv"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools", "numpy", "mujoco"],
    zip_safe=False,
    maintainer="spot_policy maintainers",
    maintainer_email="maintainers@spot-policy.invalid",
    description="Spot in a simulator behind the spot_policy ROS 2 topic contract.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={"console_scripts": ["sim_bridge = spot_sim_bridge.sim_bridge_node:main"]},
)
