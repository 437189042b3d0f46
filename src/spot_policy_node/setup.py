"""ament_python package `spot_policy`; also pip-installable (the README's .venv set-up)."""

import os
from pathlib import Path

from setuptools import find_packages, setup

# `ros2 run` finds executables in lib/<package>; a pip install into a virtual environment (the
# README's set-up, which sets SPOT_POLICY_PIP_LAYOUT=1) wants them on its bin/ instead.
ROS_LAYOUT = os.environ.get("SPOT_POLICY_PIP_LAYOUT") != "1"

PACKAGE = "spot_policy"
HERE = Path(__file__).resolve().parent


def tree(folder: str) -> list[tuple[str, list[str]]]:
    """data_files entries that install ``folder`` (a link to the workspace's) under share/."""
    entries: dict[str, list[str]] = {}
    for path in sorted((HERE / folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            rel = path.relative_to(HERE)
            entries.setdefault(f"share/{PACKAGE}/{rel.parent.as_posix()}", []).append(rel.as_posix())
    return sorted(entries.items())


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
        *tree("launch"),
        *tree("config"),
    ],
    install_requires=["setuptools", "numpy", "pyyaml", "onnxruntime", "rosbags", "matplotlib"],
    zip_safe=True,
    maintainer="spot_policy maintainers",
    maintainer_email="maintainers@spot-policy.invalid",
    description="Run Isaac Lab Spot locomotion policies over ROS 2.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "policy_node = spot_policy.policy_node:main",
            "teleop = spot_policy.teleop_node:main",
            "profile_player = spot_policy.profile_player:main",
            "recorder = spot_policy.recorder_node:main",
            "spot-policy = spot_policy.cli:main",
        ],
    },
)
