"""ament_python package `spot_hw_bridge`: the real-robot bridge (bosdyn-client) and the Spot API emulator."""

from setuptools import setup

PACKAGE = "spot_hw_bridge"

setup(
    name=PACKAGE,
    python_requires=">=3.10",  # here, not in setup.cfg: colcon reads setup() keywords as literals
    # bosdyn-client (with bosdyn-api and grpcio) talks to the robot; cryptography makes the emulator's
    # TLS certificates. Exact versions: requirements.lock.
    install_requires=["setuptools", "numpy", "bosdyn-client>=4.0", "bosdyn-api>=4.0", "grpcio", "cryptography"],
    entry_points={"console_scripts": ["hw_bridge = spot_hw_bridge.ros.hw_bridge_node:main"]},
)
