"""The shipped walking policy's acceptance, measured through ROS: `spot-policy sim --lockstep`.

Every command case for 20 s (scored after its first second), then the robustness runs: ground
friction 0.5, a 5 kg payload, and a 0.5 m/s lateral push while walking at 0.5 m/s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spot_policy.core import paths
from spot_policy_tools.run_report import read_run

EXE = Path(sys.executable).with_name("spot-policy")
SHIPPED = paths.config_dir() / "policies" / "spot_flat_mjx"
pytestmark = [
    pytest.mark.ros,
    pytest.mark.slow,
    pytest.mark.skipif(not SHIPPED.is_dir(), reason="config/policies/spot_flat_mjx is not shipped"),
]


def run(out: Path, *args: str) -> dict:
    done = subprocess.run(
        [str(EXE), "sim", "--lockstep", "--no-video", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


def test_every_command_case_tracks_within_tolerance(tmp_path: Path) -> None:
    summary = run(tmp_path / "run", "--profile", "acceptance")
    assert not summary["fell"]
    cases = [s for s in summary["segments"] if s["mode"] == "walk"]
    assert len(cases) == 9
    for case in cases:
        error = case["tracking_error"]
        assert error["vxy_m_s"] <= 0.10 and error["wz_rad_s"] <= 0.15, case
        assert not case["fell"], case


@pytest.mark.parametrize("condition", [("--friction", "0.5"), ("--payload", "5")], ids=["friction_0.5", "payload_5kg"])
def test_walks_on_low_friction_and_with_payload(tmp_path: Path, condition: tuple[str, str]) -> None:
    summary = run(tmp_path / "run", "--profile", "walk", *condition)
    walk = next(s for s in summary["segments"] if s["name"] == "walk")
    assert not summary["fell"] and walk["achieved"]["vx"] > 0.4, walk


def test_survives_a_lateral_push_while_walking(tmp_path: Path) -> None:
    summary = run(tmp_path / "run", "--profile", "push")
    assert not summary["fell"], summary
    pushed = next(s for s in summary["segments"] if s["name"] == "pushed")
    data = read_run(tmp_path / "run" / "bag")
    start = summary["profile_start_sim_time_s"] + pushed["start_s"]
    window = (data.odom_t >= start) & (data.odom_t < start + 0.3)
    # The kick happened: the base moved sideways (0.5 m/s in world y, the body is facing x).
    assert np.max(np.abs(data.twist[window, 1])) > 0.3
    assert pushed["achieved"]["vx"] > 0.4
