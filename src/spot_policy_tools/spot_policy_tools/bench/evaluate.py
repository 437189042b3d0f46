"""Evaluation sections of ``spot-policy bench``: how fast ``spot-policy evaluate`` judges a policy.

- ``evaluate``: ``--rounds`` rounds (default 3, interleaved, medians: this VM's speed drifts within
  minutes) of the ``quick`` suite with ``--workers 2``: aggregate simulated seconds per wall second
  beside one lockstep trial run alone (the same trial machinery, one worker, measured in the same
  run, its start-up included as the suite's are), beside that trial's play alone, and beside the
  same suite on one worker and beside it with ``--separate-processes`` (each trial's two nodes in
  processes of their own instead of composed in one); how many cores the trial alone kept busy (what
  bounds the gain of a second worker on this machine); the suite's wall time, and the peak memory
  of a worker process with the processes it starts and of the whole evaluation. (``--workers 2`` is
  two play slots over four worker processes: two trials play while two start up, trial.PlaySlot.)
- ``evaluate_standard``: the ``standard`` suite's wall time with ``--workers 2`` (minutes).

Each run is ``spot-policy evaluate`` in a subprocess; its process tree is sampled from /proc for
memory (a worker's proportional set size plus its trial process's and that trial's nodes').
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from spot_policy_tools.bench.common import Row
from spot_policy_tools.evaluate.runner import PROCESSES_PER_SLOT

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _memory_kb(pid: int) -> int:
    """The process's proportional set size (Linux smaps_rollup: a page shared by n processes counts
    1/n in each, so forks of one preloaded server are not counted n times over); RSS elsewhere."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KB
    except (OSError, ValueError, IndexError):
        return 0


def _subtree(pid: int, tree: dict[int, list[int]]) -> list[int]:
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(tree.get(p, []))
    return out


def _is_fork_server(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"multiprocessing.forkserver import main" in f.read()
    except OSError:
        return False


class MemorySampler:
    """Peak memory (MB, proportional set size) of each worker of ``pid`` with its own descendants
    (its trial process and that trial's nodes), and of the whole tree. A worker is a child of
    ``pid`` or, where ``pid`` started a fork server, a child of that server (what ``evaluate
    --workers N`` does); the server itself is not a worker."""

    def __init__(self, pid: int, period_s: float = 0.25) -> None:
        self.pid, self.period_s = pid, period_s
        self.peak_mb: dict[int, float] = {}
        self.peak_whole_mb = 0.0  # the whole evaluation: the command, its fork server, all workers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            tree = _children()
            units = []
            for child in tree.get(self.pid, []):
                units += tree.get(child, []) if _is_fork_server(child) else [child]
            for child in units:
                mb = sum(_memory_kb(p) for p in _subtree(child, tree)) / 1024
                self.peak_mb[child] = max(self.peak_mb.get(child, 0.0), mb)
            whole = sum(_memory_kb(p) for p in _subtree(self.pid, tree)) / 1024
            self.peak_whole_mb = max(self.peak_whole_mb, whole)
            self._stop.wait(self.period_s)

    def stop(self) -> dict[int, float]:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def run_evaluate(args: list[str], out: Path) -> tuple[dict, float, dict[int, float], float]:
    """``spot-policy evaluate ARGS --out OUT`` in a subprocess: (timing.json, wall s, peak MB per
    worker, peak MB of the whole evaluation)."""
    command = [sys.executable, "-m", "spot_policy_tools.cli", "evaluate", "--quiet", *args, "--out", str(out)]
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = MemorySampler(proc.pid)
    _stdout, stderr = proc.communicate()
    peaks = sampler.stop()
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"spot-policy evaluate {' '.join(args)} exited with {proc.returncode}: {stderr[-400:]}")
    return json.loads((out / "timing.json").read_text()), wall, peaks, sampler.peak_whole_mb


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat; NaN elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def bench_evaluate(args: argparse.Namespace) -> list[Row]:
    """Rounds of (one trial alone, the suite on 1 worker, on 2 workers), interleaved so that a drift
    of this shared machine's speed reaches all three alike; each figure is the median over rounds."""
    rounds = max(1, int(getattr(args, "rounds", 3)))
    policy = ["--policy", args.policy]
    single_rates, play_rates, cores, one_rates, rates, walls, peaks, wholes = [], [], [], [], [], [], [], []
    separate_rates = []
    for k in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            busy = busy_cpu_s()
            single, single_wall, _, _ = run_evaluate([*policy, "--suite", "quick", "--scenario", "track_steps",
                                                  "--workers", "1", "--no-media"], Path(tmp) / "single")  # fmt: skip
            cores.append((busy_cpu_s() - busy) / single_wall)
            trial = single["trials"][0]
            single_rates.append(trial["sim_s"] / trial["wall_s"])
            play_rates.append(trial["sim_s"] / trial["play_wall_s"])
            one, _one_wall, _, _ = run_evaluate([*policy, "--suite", "quick", "--workers", "1"], Path(tmp) / "one")
            one_rates.append(one["sim_s"] / one["wall_s"])
            separate, _, _, _ = run_evaluate([*policy, "--suite", "quick", "--workers", "2", "--separate-processes"],
                                             Path(tmp) / "separate")  # fmt: skip
            separate_rates.append(separate["sim_s"] / separate["wall_s"])
            quick, quick_wall, peak, whole = run_evaluate([*policy, "--suite", "quick", "--workers", "2"],
                                                          Path(tmp) / "quick")  # fmt: skip
            rates.append(quick["sim_s"] / quick["wall_s"])
            walls.append(quick_wall)
            peaks += [mb for mb in peak.values() if mb > 50]  # the workers (not the resource tracker)
            wholes.append(whole)
        print(f"bench: evaluate round {k + 1}/{rounds}: quick --workers 2 {rates[-1]:.2f} sim s/wall s, "
              f"one trial alone {single_rates[-1]:.2f}", file=sys.stderr, flush=True)  # fmt: skip
    rate, single_rate = statistics.median(rates), statistics.median(single_rates)
    sim_s = quick["sim_s"]
    return [
        Row(
            "evaluate",
            f"quick suite, --workers 2: simulated s per wall s, whole suite ({sim_s:.0f} sim s; median of {rounds})",
            "sim s / wall s",
            rate,
            float("nan"),
            "one lockstep trial alone (track_steps, with start-up)",
            single_rate,
            float("nan"),
            ">= 1.6x the single run",
            rate >= 1.6 * single_rate,
        ),
        Row(
            "evaluate",
            "quick suite, --workers 2: simulated s per wall s (the same suite on one worker as baseline)",
            "sim s / wall s",
            rate,
            float("nan"),
            "the quick suite, --workers 1 (each trial alone)",
            statistics.median(one_rates),
            float("nan"),
            goal="report (no goal)",
        ),
        Row(
            "evaluate",
            "quick suite, --workers 2: simulated s per wall s (the same with --separate-processes as baseline)",
            "sim s / wall s",
            rate,
            float("nan"),
            "the quick suite, --workers 2, each trial's nodes in two processes",
            statistics.median(separate_rates),
            float("nan"),
            goal="report (no goal)",
        ),
        Row(
            "evaluate",
            "quick suite, --workers 2: simulated s per wall s (a lockstep run's play alone as baseline)",
            "sim s / wall s",
            rate,
            float("nan"),
            "track_steps' play alone, sim time 0 to its end (no start-up)",
            statistics.median(play_rates),
            float("nan"),
            goal="report (no goal)",
        ),
        Row(
            "evaluate",
            "cores one trial alone keeps busy (whole machine, with its start-up; 2 / this bounds the gain)",
            "cores",
            statistics.median(cores),
            float("nan"),
            goal="report (no goal)",
        ),
        Row(
            "evaluate",
            "quick suite wall time, --workers 2 (8 trials; median, the goal checked on the slowest round)",
            "s",
            statistics.median(walls),
            float("nan"),
            goal="<= 60 s",
            ok=max(walls) <= 60.0,
        ),
        Row(
            "evaluate",
            "peak memory per worker process (PSS: worker, its trial process, that trial's nodes)",
            "MB",
            max(peaks, default=float("nan")),
            float("nan"),
            goal="report (no goal)",
        ),
        Row(
            "evaluate",
            f"peak memory of the whole evaluation, --workers 2 (PSS: the command, its fork server, "
            f"{2 * PROCESSES_PER_SLOT} worker processes)",
            "MB",
            max(wholes, default=float("nan")),
            float("nan"),
            goal="report (no goal)",
        ),
    ]


def bench_evaluate_standard(args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        timing, wall, peaks, whole = run_evaluate(["--policy", args.policy, "--suite", "standard", "--workers", "2"],
                                           Path(tmp) / "standard")  # fmt: skip
    workers = [mb for mb in peaks.values() if mb > 50]
    return [
        Row(
            "evaluate_standard",
            f"standard suite wall time, --workers 2 ({len(timing['trials'])} trials, {timing['sim_s']:.0f} sim s)",
            "s",
            wall,
            float("nan"),
            goal="<= 600 s",
            ok=wall <= 600.0,
        ),
        Row(
            "evaluate_standard",
            "standard suite: simulated s per wall s",
            "sim s / wall s",
            timing["sim_s"] / timing["wall_s"],
            float("nan"),
            goal="report (no goal)",
        ),
        Row(
            "evaluate_standard",
            "peak memory per worker (PSS)",
            "MB",
            max(workers, default=float("nan")),
            float("nan"),
            goal="report (no goal)",
        ),
        Row(
            "evaluate_standard",
            "peak memory of the whole evaluation (PSS)",
            "MB",
            whole,
            float("nan"),
            goal="report (no goal)",
        ),
    ]


SECTIONS = {"evaluate": bench_evaluate, "evaluate_standard": bench_evaluate_standard}
