"""DDS environment for the processes we start: a domain of one's own, localhost only, low latency.


Parallel runs (CI, other checkouts, a user's robot on the LAN) must never see each other's topics.
A domain is claimed by binding TCP port 47000 + domain on 127.0.0.1 and holding the socket for
the life of the process: other claimants skip it. Must run before rclpy is initialised; child
processes inherit the environment.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

from spot_policy.core import paths

LOCK_PORT_BASE = 47000
_held: list[socket.socket] = []


def _lock_free_domain(domains: list[int]) -> tuple[int, socket.socket]:
    """The first of ``domains`` (in random order) whose lock port is free, with its bound socket."""
    random.SystemRandom().shuffle(domains)
    for domain in domains:
        lock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            lock.bind(("127.0.0.1", LOCK_PORT_BASE + domain))
        except OSError:
            lock.close()
            continue
        return domain, lock
    raise RuntimeError(f"no free ROS domain in {min(domains)}..{max(domains)}: their lock ports are all taken")


def claim_domain(first: int = 1, last: int = 99) -> int:
    """Claim a free domain id in ``first..last`` for the life of this process, set the environment
    for it, and return it."""
    domain, lock = _lock_free_domain(list(range(first, last + 1)))
    if not _held:
        atexit.register(_release_all)
    _held.append(lock)  # held until the process exits
    isolate_environment(domain)
    return domain


def _release_all() -> None:
    """At exit: close the lock sockets (the port is free either way; this keeps the exit quiet)."""
    while _held:
        _held.pop().close()


@contextlib.contextmanager
def claimed_domain(domains: range) -> Iterator[int]:
    """A free domain of ``domains`` for the duration of the block (the environment is left alone)."""
    domain, lock = _lock_free_domain(list(domains))
    try:
        yield domain
    finally:
        lock.close()


def isolate_environment(domain: int, env: dict[str, str] | None = None) -> dict[str, str]:
    """Set ``domain`` and localhost-only discovery in ``env`` (default: this process's environment)."""
    env = os.environ if env is None else env
    env["ROS_DOMAIN_ID"] = str(domain)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # Iron and later
    if env.get("ROS_DISTRO") == "humble":
        env["ROS_LOCALHOST_ONLY"] = "1"  # Humble predates ROS_AUTOMATIC_DISCOVERY_RANGE
    env.pop("ROS_STATIC_PEERS", None)
    return env


def low_latency_environment(env: dict[str, str]) -> dict[str, str]:
    """Fast DDS publishes from the calling thread (not a sender thread) unless told otherwise.

    On a loaded machine the hand-off to Fast DDS's asynchronous sender thread costs a context
    switch per message; measured here, it halved the lockstep rate. Other RMWs ignore the variable.
    """
    env.setdefault("RMW_FASTRTPS_PUBLICATION_MODE", "SYNCHRONOUS")
    return env


#: The variables the functions here set (or, ROS_STATIC_PEERS, remove).
DDS_VARIABLES = (
    "ROS_DOMAIN_ID",
    "ROS_AUTOMATIC_DISCOVERY_RANGE",
    "ROS_LOCALHOST_ONLY",
    "ROS_STATIC_PEERS",
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "RMW_FASTRTPS_PUBLICATION_MODE",
)


@contextlib.contextmanager
def dds_environment(env: dict[str, str]) -> Iterator[None]:
    """This process's environment takes ``env``'s DDS variables (:data:`DDS_VARIABLES`; one ``env``
    lacks is removed) for the block, then gets its own back. For a participant that must be set up
    as the nodes a process starts are, in a process whose environment is not theirs (an evaluation's
    trial driver): rcl and Fast DDS read these when a context starts."""
    saved = {key: os.environ.get(key) for key in DDS_VARIABLES}
    try:
        for key in DDS_VARIABLES:
            if key in env:
                os.environ[key] = env[key]
            else:
                os.environ.pop(key, None)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


#: Fast DDS profile with quick participant discovery (config/dds/fast_discovery.xml says why).
FAST_DISCOVERY_PROFILE = Path("dds") / "fast_discovery.xml"


def fast_discovery_environment(env: dict[str, str]) -> dict[str, str]:
    """Use the quick-discovery Fast DDS profile in ``env`` unless a profile file is already set.

    For short-lived private domains (the evaluation's trials), where waiting up to 3 s for the next
    periodic announcement was most of a trial's start-up. Other RMWs ignore the variable."""
    if not env.get("FASTDDS_DEFAULT_PROFILES_FILE") and not env.get("FASTRTPS_DEFAULT_PROFILES_FILE"):
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(paths.config_dir() / FAST_DISCOVERY_PROFILE)
    return env
