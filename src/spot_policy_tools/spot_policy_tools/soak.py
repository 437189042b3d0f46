"""``spot-policy sim --duration SECONDS``: the main job for a long time, and how it holds up.

The profile's segments are played over and over until ``--duration`` (the default profile: stand,
walk, turn, sidestep, halt), through the same nodes as any run, in real time, without a recording
(half an hour of one would be gigabytes). A monitor in this process reads every node's diagnostics
once a second and each node process's resident memory every 5 s, and the run ends with, per minute:
the policy step's median and worst p99 (µs), the control-period jitter p99 (ms), the steps that
came more than half a period late (missed deadlines), the policy node's faults, the sim bridge's
dropped physics steps and each process's memory; then each process's memory growth after the first
minute and the profile player's recoveries (a fault, from a stall of this machine say, is reset and
the run goes on: one line each). ``soak.json`` holds it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spot_policy.core.profile import Profile

SOAK_NAME = "soak.json"
RSS_PERIOD_S = 5.0


def cycled_profile(base: Profile, duration_s: float) -> dict:
    """``base``'s segments after its first (the stand), repeated to fill ``duration_s`` (YAML form).

    A profile ends with its player; the soak must not stop walking between cycles, so a ``stop``
    segment is left out of the cycle."""
    first, *rest = base.segments
    cycle = [s for s in rest if s.mode != "stop"] or [first]
    segments = [{"name": first.name, "mode": first.mode, "duration": first.duration, "cmd_vel": list(first.cmd_vel)}]
    t, i = first.duration, 0
    while t < duration_s:
        s = cycle[i % len(cycle)]
        length = min(s.duration, duration_s - t)
        segments.append({"name": f"{s.name}{i // len(cycle) + 1}", "mode": s.mode, "duration": round(length, 6),
                         "cmd_vel": list(s.cmd_vel)})  # fmt: skip
        t, i = t + length, i + 1
    return {"name": f"{base.name}_soak", "settle_s": base.settle_s, "segments": segments}


def write_profile(base: Profile, duration_s: float, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cycled_profile(base, duration_s), sort_keys=False))
    return path


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process (MB), None once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


@dataclass
class Minute:
    step_us_median: list[float] = field(default_factory=list)
    step_us_p99: list[float] = field(default_factory=list)
    jitter_ms_p99: list[float] = field(default_factory=list)
    late_steps: list[int] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    dropped_steps: list[int] = field(default_factory=list)
    rss_mb: dict[str, list[float]] = field(default_factory=dict)


class SoakMonitor:
    """Samples diagnostics (via rclpy, in its own context) and process memory until stopped."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.minutes: dict[int, Minute] = {}
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-monitor", daemon=True)

    def start(self) -> SoakMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)

    def _minute(self) -> Minute:
        return self.minutes.setdefault(int((time.monotonic() - self.started) // 60), Minute())

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            minute = self._minute()
            if status.name.startswith("policy_node"):
                try:
                    minute.step_us_median.append(float(values["step_us_median"]))
                    minute.step_us_p99.append(float(values["step_us_p99"]))
                    minute.jitter_ms_p99.append(float(values["period_jitter_ms_p99"]))
                    minute.late_steps.append(int(values["late_steps"]))
                    minute.faults.append(int(values["faults"]))
                except (KeyError, ValueError):
                    pass
            elif status.name.startswith("sim_bridge") and "dropped_steps" in values:
                minute.dropped_steps.append(int(values["dropped_steps"]))

    def _run(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        context = Context()
        rclpy.init(context=context)
        node = rclpy.create_node("soak_monitor", context=context)
        node.create_subscription(DiagnosticArray, "diagnostics", self._on_diagnostics, 50)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        next_rss = 0.0
        try:
            while not self._stop.is_set():
                executor.spin_once(timeout_sec=0.2)
                if time.monotonic() >= next_rss:
                    next_rss = time.monotonic() + RSS_PERIOD_S
                    minute = self._minute()
                    for name, pid in self.pids.items():
                        mb = rss_mb(pid)
                        if mb is not None:
                            minute.rss_mb.setdefault(name, []).append(mb)
        finally:
            node.destroy_node()
            rclpy.try_shutdown(context=context)

    def report(self) -> dict:
        rows = []
        previous_late: int | None = None
        previous_dropped: int | None = None
        previous_faults: int | None = None
        for index in sorted(self.minutes):
            m = self.minutes[index]
            late = max(m.late_steps) if m.late_steps else None
            faults = max(m.faults) if m.faults else None
            dropped = max(m.dropped_steps) if m.dropped_steps else None
            rows.append(
                {
                    "minute": index + 1,
                    "step_us_median": _median(m.step_us_median),
                    "step_us_p99_worst": max(m.step_us_p99, default=None),
                    "period_jitter_ms_p99_worst": max(m.jitter_ms_p99, default=None),
                    "late_steps": None if late is None else late - (previous_late or 0),
                    "faults": None if faults is None else faults - (previous_faults or 0),
                    "bridge_dropped_steps": None if dropped is None else dropped - (previous_dropped or 0),
                    "rss_mb": {name: round(_median(v) or 0.0, 1) for name, v in sorted(m.rss_mb.items())},
                }
            )
            previous_late = late if late is not None else previous_late
            previous_faults = faults if faults is not None else previous_faults
            previous_dropped = dropped if dropped is not None else previous_dropped
        growth = {}
        if len(rows) >= 2:
            for name in self.pids:
                series = [(r["minute"], r["rss_mb"].get(name)) for r in rows[1:] if r["rss_mb"].get(name)]
                if len(series) >= 2:
                    growth[name] = {
                        "after_first_minute_mb": round(series[-1][1] - series[0][1], 1),
                        "slope_mb_per_min": round(_slope(series), 3),
                    }
        return {"minutes": rows, "memory_growth": growth}


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _slope(points: list[tuple[int, float]]) -> float:
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def format_report(report: dict) -> str:
    head = (
        f"{'min':>4} {'step med us':>12} {'step p99 us':>12} {'jitter p99 ms':>14} {'late steps':>11} "
        f"{'faults':>7} {'dropped':>8}  memory MB"
    )
    lines = [head]
    for r in report["minutes"]:

        def f(v, spec: str) -> str:
            return "-" if v is None else format(v, spec)

        mem = ", ".join(f"{k} {v:.0f}" for k, v in r["rss_mb"].items())
        lines.append(
            f"{r['minute']:>4} {f(r['step_us_median'], '.1f'):>12} {f(r['step_us_p99_worst'], '.1f'):>12} "
            f"{f(r['period_jitter_ms_p99_worst'], '.2f'):>14} {f(r['late_steps'], 'd'):>11} {f(r['faults'], 'd'):>7} "
            f"{f(r['bridge_dropped_steps'], 'd'):>8}  {mem}"
        )
    for name, g in report["memory_growth"].items():
        lines.append(
            f"memory {name}: {g['after_first_minute_mb']:+.1f} MB after the first minute "
            f"({g['slope_mb_per_min']:+.3f} MB/min)"
        )
    recoveries = report.get("recoveries", [])
    lines.append(f"recoveries: {len(recoveries)}" + "".join(f"\n  {line}" for line in recoveries))
    return "\n".join(lines)


def recoveries(player_log: Path) -> list[str]:
    """The profile player's recovery lines (what was refused, and why), from its log."""
    if not player_log.is_file():
        return []
    lines = player_log.read_text(errors="replace").splitlines()
    return [line.split("]: ", 1)[-1] for line in lines if "]: recovery " in line and "refused" in line]


def write_report(report: dict, out: Path) -> Path:
    path = out / SOAK_NAME
    path.write_text(json.dumps(report, indent=2))
    return path
