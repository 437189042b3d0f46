"""``spot-policy``: inspect (table and JSON), its errors, and a short run of every bench section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spot_policy.core.onnx_mlp import random_mlp
from spot_policy_tools.cli import main

from policy_fixtures import make_run

EXE = Path(sys.executable).with_name("spot-policy")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("logs") / "spot_flat", layers=random_mlp((48, 64, 12), seed=2))


def test_inspect_json(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(run / "exported" / "policy.onnx"), "--json", "--providers", "cpu"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["run_dir"] == str(run)
    assert info["timing"] == {"physics_dt_s": 0.002, "decimation": 10, "control_dt_s": 0.02, "control_rate_hz": 50.0}
    assert [(t["func"], t["slice"]) for t in info["observation"]["terms"]][4] == ("joint_pos_rel", [12, 24])
    assert info["observation"]["dim"] == 48
    fl_kn = next(j for j in info["joints"] if j["name"] == "fl_kn")
    assert fl_kn == {
        "name": "fl_kn",
        "default": -1.5,
        "kp": 60.0,
        "kd": 1.5,
        "effort_limit": "angle-dependent table",
        "lower": -2.7929,
        "upper": -0.2471,
    }
    assert info["action"]["scale"] == [0.2] * 12 and info["action"]["joint_order"][:2] == ["fl_hx", "fr_hx"]
    assert info["command_ranges"]["lin_vel_x"] == [-2.0, 3.0]
    assert info["onnx_model"]["inputs"] == [{"name": "obs", "shape": [1, 48]}]
    assert info["onnx_model"]["execution_provider"] == "CPUExecutionProvider"
    assert info["newest_checkpoint"].endswith("model_1500.pt")


def test_inspect_table_latest_and_provider_fallback(run: Path) -> None:
    done = subprocess.run(
        [str(EXE), "inspect", "latest", "--logs-root", str(run.parent)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "physics dt 0.002 s x decimation 10 = 0.02 s (50 Hz)" in out
    assert "0:3       base_lin_vel         base_lin_vel" in out
    assert "fl_kn     -1.500     60   1.5  angle-dependent table" in out
    assert "lin_vel_x  [-2, 3] m/s" in out
    # TensorRT and CUDA are not in the CPU build of ONNX Runtime: the fallback is said, then CPU runs.
    assert "note: ONNX Runtime: TensorrtExecutionProvider" in out
    assert "provider CPUExecutionProvider" in out


def test_inspect_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run([str(EXE), "inspect", str(tmp_path / "missing")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spot-policy: error: ") and "; fix: " in lines[0]


def test_help_names_every_command() -> None:
    done = subprocess.run([str(EXE), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for command in ("inspect", "bench"):
        assert command in done.stdout
    assert "spot-policy inspect latest --logs-root" in done.stdout


def test_bench_sections_run_and_report(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "--only", "policy,dds", "--policy", str(run), "--iterations", "400", "--pings", "60", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {r["section"]: r for r in report["rows"]}
    assert set(rows) == {"policy", "dds"}
    for row in rows.values():
        assert row["median"] > 0 and row["p99"] >= row["median"]
        assert row["baseline_median"] > 0 and row["ratio"] > 0
        assert row["goal"]
    assert "lost 0" in rows["dds"]["name"]


def test_bench_unknown_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--only", "warp"]) == 2
    assert "unknown section(s) warp" in capsys.readouterr().err
