"""``spot-policy sim --duration``: the soak mode (issue 14): its profile, its per-minute report, a short run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spot_policy.core import paths
from spot_policy.core.profile import load_profile, parse_profile
from spot_policy_tools.soak import Minute, SoakMonitor, cycled_profile

EXE = Path(sys.executable).with_name("spot-policy")


def test_the_profile_cycles_the_walking_segments_to_the_duration() -> None:
    base = load_profile("default", paths.config_dir() / "profiles")
    data = cycled_profile(base, 100.0)
    profile = parse_profile(data, "soak")
    assert profile.duration == pytest.approx(100.0)
    assert profile.segments[0].mode == "stand" and all(s.mode == "walk" for s in profile.segments[1:])
    assert {s.cmd_vel for s in profile.segments[1:5]} == {s.cmd_vel for s in base.segments if s.mode == "walk"}


def test_the_report_gives_per_minute_deltas_and_memory_growth_after_the_first_minute() -> None:
    monitor = SoakMonitor({"policy_node": 1, "sim_bridge": 2})
    for i, (late, rss) in enumerate([(3, 100.0), (5, 101.0), (5, 101.0), (9, 102.0)]):
        monitor.minutes[i] = Minute(
            step_us_median=[40.0, 42.0],
            step_us_p99=[80.0, 120.0],
            jitter_ms_p99=[0.5],
            late_steps=[late - 1, late],
            dropped_steps=[0],
            rss_mb={"policy_node": [rss], "sim_bridge": [200.0]},
        )
    report = monitor.report()
    assert [r["late_steps"] for r in report["minutes"]] == [3, 2, 0, 4]
    assert report["minutes"][0]["step_us_p99_worst"] == 120.0
    assert report["memory_growth"]["policy_node"]["after_first_minute_mb"] == 1.0
    assert report["memory_growth"]["policy_node"]["slope_mb_per_min"] == pytest.approx(0.5)
    assert report["memory_growth"]["sim_bridge"]["after_first_minute_mb"] == 0.0


@pytest.mark.slow
@pytest.mark.ros
def test_a_short_soak_reports_every_minute_and_process_and_goes_on_after_a_fault(tmp_path: Path) -> None:
    """A NaN injected 7 s into the sim faults the node mid-walk; the soak's player resets the node and
    the sim, stands and walks on, and the report counts the fault and names the recovery."""
    out = tmp_path / "soak"
    cmd = [str(EXE), "sim", "--duration", "20", "--out", str(out), "--bridge", "fault_nan_at_s=7"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "soak.json").read_text())
    assert [r["minute"] for r in report["minutes"]] == [1]
    first = report["minutes"][0]
    assert first["step_us_median"] and first["step_us_p99_worst"] and first["late_steps"] is not None
    assert first["faults"] == 1, first
    assert {"sim_bridge", "policy_node", "profile_player"} <= set(first["rss_mb"])
    assert "memory" in done.stdout and "soak.json" in done.stdout
    [recovery] = report["recoveries"]
    assert recovery.startswith("recovery 1: policy node refused walk") and "in fault" in recovery, recovery
    player = (out / "logs" / "profile_player.log").read_text()
    assert "recovery 1: back in" in player, player[-2000:]
    # After the recovery the node walked again: its last word is a walk request accepted.
    policy = (out / "logs" / "policy_node.log").read_text()
    assert policy.rindex("walk: policy running") > policy.index("FAULT"), policy[-2000:]
