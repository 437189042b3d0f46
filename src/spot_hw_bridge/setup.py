"""ament_python package `spot_hw_bridge`: the real-robot bridge (bosdyn-client) and the Spot API emulator."""

import os

from setuptools import find_packages, setup

# `ros2 run` finds executables in lib/<package>; a pip install into a virtual environment (the
# README's set-up, which sets SPOT_POLICY_PIP_LAYOUT=1) wants them on its bin/ instead.
ROS_LAYOUT = os.environ.get("SPOT_POLICY_PIP_LAYOUT") != "1"

PACKAGE = "spot_hw_bridge"

setup(
    name=PACKAGE,
    options=(
        {"develop": {"script_dir": f"$base/lib/{PACKAGE}"}, "install": {"install_scripts": f"$base/lib/{PACKAGE}"}}
        if ROS_LAYOUT
        else {}
    ),
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    # bosdyn-client (with bosdyn-api and grpcio) talks to the robot; cryptography makes the emulator's
    # TLS certificates. Exact versions: requirements.lock.
    install_requires=["setuptools", "numpy", "bosdyn-client>=4.0", "bosdyn-api>=4.0", "grpcio", "cryptography"],
    zip_safe=True,
    maintainer="spot_policy maintainers",
    maintainer_email="maintainers@spot-policy.invalid",
    description="Spot robot bridge for the spot_policy ROS 2 topic contract.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={"console_scripts": ["hw_bridge = spot_hw_bridge.hw_bridge_node:main"]},
)
