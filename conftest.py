"""Test isolation for real rclpy over DDS: a ROS domain of its own per test process, localhost only.

Runs at import, before any test module imports rclpy, so every context of this process (and every
child process it starts) uses it. Also: headless runs render MuJoCo through OSMesa unless
MUJOCO_GL says otherwise (MuJoCo picks its GL backend when first imported).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spot_policy.ros.dds_isolation import claim_domain

ROS_DOMAIN_ID = claim_domain()
# The shared test helpers (policy_fixtures, ros_harness, hw_fixtures, round_trip), importable from
# every test folder whichever of them pytest collects first.
ROOT = Path(__file__).resolve().parent
for helpers in ("spot_policy_node", "spot_hw_bridge", "spot_policy_tools"):
    sys.path.insert(0, str(ROOT / "src" / helpers / "test"))
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "osmesa"


@pytest.fixture(scope="session")
def ros_domain_id() -> int:
    """The ROS domain this test process owns."""
    return ROS_DOMAIN_ID


@pytest.fixture()
def ros_context() -> Iterator[object]:
    """An rclpy context of the test's own, shut down after it (whatever the test left running)."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)
