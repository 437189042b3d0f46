"""ament_python package `spot_policy_tools`: the `spot-policy` CLI, jobs, bench, replay and run reports.

They sit above the three ROS packages and import from them, never the other way round. The CLI is
a user command, so it installs into bin/ (on PATH after `source install/setup.bash`), not lib/.
"""

from setuptools import setup

PACKAGE = "spot_policy_tools"

setup(
    name=PACKAGE,
    python_requires=">=3.10",  # here, not in setup.cfg: colcon reads setup() keywords as literals
    # matplotlib draws the run and replay reports; imageio-ffmpeg encodes the run's video.
    install_requires=["setuptools", "numpy", "rosbags", "matplotlib", "imageio-ffmpeg"],
    # spot-policy evaluate --ray ADDRESS runs trials as Ray tasks (requirements.lock pins it for CI).
    extras_require={"ray": ["ray==2.60.0"]},
    entry_points={"console_scripts": ["spot-policy = spot_policy_tools.cli:main"]},
)
