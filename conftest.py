"""Test isolation for real rclpy over DDS: a ROS domain of its own per test process, localhost only.

Also: headless runs render MuJoCo through OSMesa unless MUJOCO_GL says otherwise (MuJoCo picks its
GL backend when first imported, so this must run before any test module imports mujoco).

Runs at import, before any test module imports rclpy, so every context of this process uses it.
The domain is claimed by binding TCP port 47000 + domain on 127.0.0.1 and holding the socket for
the whole session: parallel pytest processes (xdist workers, other checkouts) then skip it.
"""

from __future__ import annotations

import os
import random
import socket

import pytest

_LOCK_PORT_BASE = 47000


def _claim_domain() -> tuple[int, socket.socket]:
    """A ROS domain id in 1..99 that no other process on this host holds, and its lock socket."""
    domains = list(range(1, 100))
    random.shuffle(domains)
    for domain in domains:
        lock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            lock.bind(("127.0.0.1", _LOCK_PORT_BASE + domain))
        except OSError:
            lock.close()
            continue
        return domain, lock
    raise RuntimeError(f"no free ROS domain: ports {_LOCK_PORT_BASE + 1}..{_LOCK_PORT_BASE + 99} all taken")


ROS_DOMAIN_ID, _DOMAIN_LOCK = _claim_domain()  # the socket lives as long as the process
os.environ["ROS_DOMAIN_ID"] = str(ROS_DOMAIN_ID)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # Iron and later
if os.environ.get("ROS_DISTRO") in ("humble",):
    os.environ["ROS_LOCALHOST_ONLY"] = "1"  # Humble predates ROS_AUTOMATIC_DISCOVERY_RANGE
os.environ.pop("ROS_STATIC_PEERS", None)
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "osmesa"


@pytest.fixture(scope="session")
def ros_domain_id() -> int:
    """The ROS domain this test process owns."""
    return ROS_DOMAIN_ID
