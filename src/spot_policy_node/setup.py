"""ament_python package `spot_policy`; also pip-installable (the README's .venv set-up)."""

from pathlib import Path

from setuptools import find_packages, setup

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
    packages=find_packages(exclude=["test"]),
    python_requires=">=3.10",  # here, not in setup.cfg: colcon reads setup() keywords as literals
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *tree("launch"),
        *tree("config"),
    ],
    install_requires=["setuptools", "numpy", "pyyaml", "onnxruntime", "rosbags", "foxglove-sdk", "evdev"],
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "policy_node = spot_policy.ros.policy_node:main",
            "teleop = spot_policy.ros.teleop_node:main",
            "profile_player = spot_policy.ros.profile_player:main",
            "recorder = spot_policy.ros.recorder_node:main",
            "live_view = spot_policy.ros.live_view_node:main",
            "keyboard_teleop = spot_policy.ros.keyboard_teleop:main",
            "gamepad = spot_policy.ros.gamepad_node:main",
        ],
    },
)
