"""What every bench section shares: a figure beside its baseline, interleaved timing, the output."""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Row:
    """One figure: its median/p99 and, where it has one, its baseline and goal."""

    section: str
    name: str
    unit: str
    median: float
    p99: float
    baseline: str = ""
    baseline_median: float = float("nan")
    baseline_p99: float = float("nan")
    goal: str = ""
    ok: bool | None = None

    @property
    def ratio(self) -> float:
        return self.median / self.baseline_median if self.baseline_median == self.baseline_median else float("nan")


Section = Callable[[argparse.Namespace], list[Row]]


def interleaved(first: Callable[[], None], second: Callable[[], None], n: int, block: int) -> tuple[np.ndarray, ...]:
    """Time ``n`` calls of each, alternating blocks, after a warm-up; returns nanoseconds."""
    clock = time.perf_counter_ns
    for _ in range(block):
        first()
        second()
    times: tuple[list[int], list[int]] = ([], [])
    while len(times[0]) < n:
        for fn, out in ((first, times[0]), (second, times[1])):
            for _ in range(block):
                t0 = clock()
                fn()
                out.append(clock() - t0)
    return np.array(times[0][:n]), np.array(times[1][:n])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def table(rows: list[Row]) -> str:
    head = f"{'benchmark':<78} {'median':>9} {'p99':>9}  {'baseline':<40} {'b.median':>9} {'b.p99':>9} {'ratio':>6}  ok"
    lines = [head, "-" * len(head)]
    for r in rows:
        ok = "-" if r.ok is None else ("yes" if r.ok else "NO")
        lines.append(
            f"{r.name + ' [' + r.unit + ']':<78} {r.median:>9.3f} {r.p99:>9.3f}  {r.baseline:<40} "
            f"{r.baseline_median:>9.3f} {r.baseline_p99:>9.3f} {r.ratio:>6.2f}  {ok}"
        )
        if r.goal:
            lines.append(f"{'':<4}goal: {r.goal}")
    return "\n".join(lines)
