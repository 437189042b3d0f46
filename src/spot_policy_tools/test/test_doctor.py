"""``spot-policy doctor --backend isaac``: every line, and the whole command where Isaac Sim is absent.

Isaac Sim is not installed here, so the Spot USD and joint-name lines are tested up to the point
where Isaac Sim would start; the backend's own refusal is what the doctor reports beyond it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spot_policy.core import contract
from spot_policy_tools import doctor
from spot_sim_bridge.backends import isaac_release
from spot_sim_bridge.backends.isaac_release import IsaacSimInstall

from policy_fixtures import make_run

EXE = Path(sys.executable).with_name("spot-policy")
PYTHON = sys.version_info
HERE_LINE = next((line for line in isaac_release.LINES.values() if line.python == tuple(PYTHON[:2])), None)
#: What ``nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader`` printed on
#: this project's H200 device machine (the doctor's GPU line there: warn, not in Isaac Sim's table).
H200_NVIDIA_SMI = "NVIDIA H200, 580.159.04, 143771 MiB\n"


def installed(version: str | None) -> IsaacSimInstall:
    return IsaacSimInstall(version, "test")


def smi(stdout: str, returncode: int = 0, stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(["nvidia-smi"], returncode, stdout, stderr)


@pytest.mark.skipif(isaac_release.find_isaac_sim() is not None, reason="Isaac Sim is installed here")
def test_doctor_here_says_on_each_line_that_isaac_sim_is_absent() -> None:
    env = {k: v for k, v in os.environ.items() if k not in (doctor.EULA_ENV, "SPOT_ISAAC_USD")}
    done = subprocess.run(
        [str(EXE), "doctor", "--backend", "isaac"], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 1 and done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    by_name = {line[6:].split(":", 1)[0]: line for line in lines[:-1]}
    assert list(by_name) == ["Python", "Isaac Sim", "GPU", "EULA", "physics scene", "Spot USD", "joint names"]
    assert by_name["Isaac Sim"].startswith("FAIL  Isaac Sim: not installed in this Python; fix: pip install 'isaacsim")
    assert by_name["EULA"].startswith("FAIL  EULA: OMNI_KIT_ACCEPT_EULA is not set") and "=YES" in by_name["EULA"]
    assert by_name["physics scene"].startswith("ok    physics scene: ") and "(gravity_z)" in by_name["physics scene"]
    assert by_name["Spot USD"].startswith("skip  Spot USD: no local USD given")
    assert "Isaac Sim cannot start here (Isaac Sim" in by_name["Spot USD"]
    assert by_name["joint names"].startswith("skip  joint names: not checked: needs Spot loaded in Isaac Sim")
    failed = [name for name, line in by_name.items() if line.startswith("FAIL")]
    assert lines[-1] == f"{len(failed)} of 7 checks failed: {', '.join(failed)}"
    assert "starting Isaac Sim" not in done.stdout  # nothing was started


def test_python_line() -> None:
    exe = "/venv/bin/python"
    assert (
        doctor.check_python((3, 11, 7), None, exe).line().startswith("ok    Python: Python 3.11.7 (/venv/bin/python)")
    )
    assert "fits Isaac Sim 6.x" in doctor.check_python((3, 12, 3), None, exe).detail
    assert doctor.check_python((3, 12, 3), installed("6.0.1.0"), exe).status == doctor.OK
    wrong = doctor.check_python((3, 11, 7), installed("6.0.1.0"), exe)
    assert wrong.status == doctor.FAIL and "runs on Python 3.12 only; fix:" in wrong.detail
    assert doctor.check_python((3, 10, 12), None, exe).status == doctor.FAIL


def test_isaac_sim_line() -> None:
    missing = doctor.check_isaac_sim((3, 12, 3), None)
    assert missing.status == doctor.FAIL and "fix: pip install 'isaacsim[all,extscache]==6.0.1'" in missing.detail
    assert doctor.check_isaac_sim((3, 11, 7), installed("4.5.0.0")).status == doctor.FAIL
    assert doctor.check_isaac_sim((3, 11, 7), installed("5.1.0.0")).status == doctor.OK
    newer = doctor.check_isaac_sim((3, 12, 3), installed("6.2.0.0"))
    assert newer.status == doctor.WARN and "not 6.0.1" in newer.detail and "conformance suite" in newer.detail
    assert doctor.check_isaac_sim((3, 12, 3), installed(None)).status == doctor.WARN


@pytest.mark.parametrize(
    ("result", "status", "says"),
    [
        (smi("NVIDIA GeForce RTX 4090, 550.54.14, 24564 MiB\n"), "ok", "RTX 4090 (driver 550.54.14, 24564 MiB)"),
        (smi("NVIDIA L40S, 550.54.14, 46068 MiB\n"), "ok", "NVIDIA L40S"),
        (smi(H200_NVIDIA_SMI), "warn", "NVIDIA H200 (driver 580.159.04, 143771 MiB): not in Isaac Sim's GPU table"),
        (smi("", 9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."), "FAIL", "driver"),
        (None, "FAIL", "no nvidia-smi on PATH"),
    ],
)
def test_gpu_line_reads_nvidia_smi(result: subprocess.CompletedProcess[str] | None, status: str, says: str) -> None:
    check = doctor.check_gpu(lambda: result)
    assert check.status == status and says in check.detail
    if status == "FAIL":
        assert "fix: Isaac Sim needs an NVIDIA RTX GPU" in check.detail


def test_gpu_line_when_nvidia_smi_cannot_run() -> None:
    def broken() -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(["nvidia-smi"], 30)

    assert doctor.check_gpu(broken).status == doctor.FAIL


def test_eula_line() -> None:
    assert doctor.check_eula({}).status == doctor.FAIL
    assert doctor.check_eula({doctor.EULA_ENV: "YES"}).status == doctor.OK
    refused = doctor.check_eula({doctor.EULA_ENV: "no"})
    assert refused.status == doctor.FAIL and "OMNI_KIT_ACCEPT_EULA='no'" in refused.detail


def test_spot_usd_line_without_isaac_sim(tmp_path: Path) -> None:
    usd = tmp_path / "spot.usd"
    usd.write_bytes(b"#usda 1.0\n" * 1000)
    assert doctor.check_usd_static(str(usd), None).line() == f"ok    Spot USD: {usd} (0.0 MB)"
    missing = doctor.check_usd_static(str(tmp_path / "none.usd"), None)
    assert missing.status == doctor.FAIL and "does not exist; fix:" in missing.detail
    assert doctor.check_usd_static("omniverse://nucleus/spot.usd", None).status == doctor.OK
    root = doctor.check_usd_static(None, installed("6.0.1.0"))
    assert root.status == doctor.SKIP and "/Assets/Isaac/6.0, which only Isaac Sim" in root.detail


def test_physics_scene_line(tmp_path: Path) -> None:
    shipped = doctor.check_scene("spot_flat_mjx", None)
    assert shipped.status == doctor.OK and "1 of 17 settings from it (gravity_z)" in shipped.detail
    run = make_run(tmp_path / "logs")
    env_yaml = run / "params" / "env.yaml"
    env_yaml.write_text(env_yaml.read_text().replace("sim:\n", "sim:\n  physx:\n    enable_ccd: maybe\n", 1))
    bad = doctor.check_scene(str(run), None)
    assert bad.status == doctor.FAIL and "sim.physx.enable_ccd is 'maybe'; fix: true or false" in bad.detail


def test_joints_are_matched_to_the_contract_by_name() -> None:
    usd_names = [contract.urdf_name(joint) for joint in contract.SDK_JOINT_ORDER] + ["arm0_sh0"]
    pairs = doctor.spot_joints(usd_names)
    assert [joint for joint, _ in pairs] == list(contract.ISAAC_JOINT_ORDER)
    assert all(contract.canonical_joint_name(name) == joint for joint, name in pairs)


@pytest.mark.skipif(HERE_LINE is None, reason="this Python fits no Isaac Sim release")
def test_spot_is_loaded_only_when_the_lines_before_allow_it(tmp_path: Path) -> None:
    install = installed(HERE_LINE.checked)  # as if the matching Isaac Sim were installed
    ok_gpu = lambda: doctor.Check("GPU", doctor.OK, "stand-in")  # noqa: E731
    accepted = {doctor.EULA_ENV: "YES"}
    skipped = doctor.isaac_checks(install, None, "spot_flat_mjx", None, load=False, environ=accepted, gpu=ok_gpu)
    assert skipped[-1] == doctor.Check("joint names", doctor.SKIP, "not checked: --no-load")
    # Non-interactive without the EULA accepted: Kit would wait on a prompt, so nothing is started.
    blocked = doctor.isaac_checks(install, None, "spot_flat_mjx", None, load=True, environ={}, gpu=ok_gpu)
    assert "Isaac Sim cannot start here (EULA above)" in blocked[-2].detail
    if isaac_release.find_isaac_sim() is None:
        # Everything allows a start: the doctor asks the backend, which refuses (no isaacsim here).
        loaded = doctor.isaac_checks(install, None, "spot_flat_mjx", None, load=True, environ=accepted, gpu=ok_gpu)
        assert loaded[-2].status == doctor.FAIL and loaded[-2].detail == isaac_release.isaac_unavailable_reason()
        assert loaded[-1] == doctor.Check("joint names", doctor.SKIP, "no Spot loaded")
