"""Test helpers: an emulator with a known login, a bridge core against it, a 50 Hz joint_command feeder."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from spot_hw_bridge.core.bridge import HwBridge, HwBridgeConfig, Phase
from spot_hw_bridge.core.conversion import SDK_ORDER, Gains
from spot_hw_bridge.core.errors import Credentials
from spot_hw_bridge.emulator import SpotEmulator

# Distinctive, so a leak anywhere is found by a plain substring search.
USERNAME = "op-Quokka-5521"
PASSWORD = "pw-Zebra-93817!"
CREDENTIALS = Credentials(USERNAME, PASSWORD)


@contextmanager
def running_emulator(tls_dir: Path | None = None, **kwargs) -> Iterator[SpotEmulator]:
    emulator = SpotEmulator(USERNAME, PASSWORD, tls_dir=tls_dir, **kwargs).start()
    try:
        yield emulator
    finally:
        emulator.stop()


def bridge_config(emulator: SpotEmulator, **overrides) -> HwBridgeConfig:
    config = HwBridgeConfig(
        hostname="127.0.0.1",
        port=emulator.port,
        ca_cert=str(emulator.ca_path),
        time_sync_timeout_s=3.0,
        connect_timeout_s=5.0,
    )
    return replace(config, **overrides)


class Recorder:
    """Collects the core's events (level, message) and counts state samples."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.states = 0

    def event(self, level: str, message: str) -> None:
        self.events.append((level, message))

    def state(self, sample, stamp_ns: int) -> None:
        self.states += 1

    def text(self) -> str:
        return "\n".join(f"{level}: {message}" for level, message in self.events)


class Feeder:
    """The policy node's side: the default pose as joint_command at 50 Hz until stopped."""

    def __init__(self, core: HwBridge, gains: Gains, period_s: float = 0.02) -> None:
        self.core, self.gains, self.period = core, gains, period_s
        self._run = threading.Event()
        self._run.set()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        names, pose = list(SDK_ORDER), self.gains.default_pose.tolist()
        while self._run.is_set():
            self.core.command(names, pose)
            time.sleep(self.period)

    def stop(self) -> None:
        self._run.clear()
        self._thread.join(timeout=2.0)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, poll: float = 0.005) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll)
    return predicate()


def left_active_at(core: HwBridge, after: float) -> float | None:
    """time.monotonic() of the first transition out of ACTIVE after ``after``."""
    for t, phase, _reason in list(core.transitions):
        if t >= after and phase != Phase.ACTIVE.value:
            return t
    return None
