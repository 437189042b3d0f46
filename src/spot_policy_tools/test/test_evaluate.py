"""spot-policy evaluate end to end: the shipped sim bridge and policy node over DDS, lockstep, one ROS
domain per trial; the report in a real headless Chromium; a degraded policy caught; reproducible
results on any worker count and on Ray; bad input; Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spot_policy.core import paths
from spot_policy_tools import cli

from ray_cluster import ray_head

SHIPPED = paths.config_dir() / "policies" / "spot_flat_mjx"
#: The scenarios the comparison tests use (5 trials: tracking x2, push, noise, NaN).
SUBSET = ["track_steps", "push_walking", "sensing_noise", "safety_nan"]


def evaluate(*args: str) -> int:
    return cli.main(["evaluate", "--quiet", *args])


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quick") / "eval"
    assert evaluate("--suite", "quick", "--workers", "2", "--out", str(out)) == 0
    return out


def test_shipped_policy_passes_quick(quick_run: Path) -> None:
    doc = results(quick_run)
    assert doc["schema"] == "spot_policy.evaluate/1" and doc["complete"]
    policy = doc["policies"][0]
    failed = {n: s["failed_checks"] for n, s in policy["scenarios"].items() if s["passed"] is not True}
    assert not failed, failed
    assert policy["score"]["passed_all"] and policy["score"]["judged"] == len(policy["scenarios"]) == 7
    nan = policy["scenarios"]["safety_nan"]["trials"][0]["metrics"]
    assert nan["faulted"] and nan["fault_detect_s"] == 0.0 and 0.0 < nan["safe_state_s"] <= 0.15
    timing = json.loads((quick_run / "timing.json").read_text())
    assert timing["sim_s"] > 50 and len(timing["trials"]) == 8


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is missing: run scripts/setup (installs Debian's chromium)"
    return found


def _open(page: Path, shot: Path | None = None) -> tuple[str, str]:
    """(DOM, stderr) of a page in headless Chromium; console messages are logged to stderr."""
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    base += ["--window-size=1400,1100", f"--user-data-dir={page.parent / '.chromium'}"]
    if shot is not None:
        shot_args = [*base, f"--screenshot={shot}", page.as_uri()]
        return "", subprocess.run(shot_args, capture_output=True, text=True, timeout=120).stderr
    run = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    return run.stdout, run.stderr


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line]


def test_report_opens_in_chromium_without_console_errors(quick_run: Path, tmp_path: Path) -> None:
    # The detector sees a console error when there is one (else this test could not fail).
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('broken report')</script></body></html>")
    assert any("broken report" in line for line in _console(_open(bad)[1]))

    page = tmp_path / "report.html"
    shutil.copy(quick_run / "report.html", page)
    dom, stderr = _open(page)
    assert not _console(stderr), _console(stderr)
    assert '<table id="scorecard">' in dom
    scorecard = dom.split('<table id="scorecard">', 1)[1].split("</table>", 1)[0]
    assert scorecard.count("<tr>") == 1 + 7 and scorecard.count(">PASS<") == 7
    assert "http://" not in dom.replace('xmlns="http://www.w3.org/2000/svg"', "")

    shot = tmp_path / "report.png"
    _, stderr = _open(page, shot)
    assert not _console(stderr)
    import imageio.v3 as iio

    image = iio.imread(shot)[:, :, :3].astype(int)
    # The scorecard is drawn: its verdict column (the first pass-coloured cells from the top) holds
    # one pass-coloured cell per scenario, stacked between 1 px borders.
    passed = np.all(np.abs(image - np.array([218, 251, 225])) <= 2, axis=2)
    assert passed.any(), "no pass-coloured cell in the screenshot"
    y0 = int(np.flatnonzero(passed.any(axis=1))[0])
    xs = np.flatnonzero(passed[y0 + 3])
    x = int(xs[np.argmax(passed[:, xs].sum(axis=0))])
    edges = np.diff(np.concatenate([[0], passed[:, x].astype(int), [0]]))
    cells = [e - s for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True) if e - s >= 10]
    assert len(cells) == 7, f"{len(cells)} verdict cells in the screenshot's scorecard"


def _degraded_policy(where: Path) -> Path:
    """The shipped run folder with its ONNX output scaled by 0.5 (a policy that barely moves its legs)."""
    import onnx
    from onnx import helper, numpy_helper

    run = where / "spot_flat_degraded"
    shutil.copytree(SHIPPED / "params", run / "params")
    (run / "exported").mkdir(parents=True)
    model = onnx.load(str(SHIPPED / "exported" / "policy.onnx"))
    graph = model.graph
    out = graph.output[0]
    raw = f"{out.name}_unscaled"
    for node in graph.node:
        node.output[:] = [raw if o == out.name else o for o in node.output]
    graph.initializer.append(numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half"))
    graph.node.append(helper.make_node("Mul", [raw, "half"], [out.name]))
    onnx.checker.check_model(model)
    onnx.save(model, str(run / "exported" / "policy.onnx"))
    return run


def test_degraded_policy_fails_named_scenarios(quick_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    degraded = _degraded_policy(tmp_path)
    out = tmp_path / "eval"
    scenarios = [a for n in ("track_steps", "turn_sidestep", "safety_nan") for a in ("--scenario", n)]
    code = evaluate(
        "--policy", str(degraded), "--policy", "spot_flat_mjx", "--suite", "quick", *scenarios,
        "--workers", "2", "--baseline", str(quick_run / "results.json"), "--out", str(out),
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 1  # the first policy against the shipped policy's quick results
    regressed = printed.split("regressed against", 1)[1]
    assert "track_steps" in regressed and "turn_sidestep" in regressed and "safety_nan" not in regressed
    doc = results(out)
    bad, good = doc["policies"]
    assert bad["label"] == "spot_flat_degraded" and good["label"] == "spot_flat_mjx"
    assert bad["scenarios"]["track_steps"]["passed"] is False
    assert "tracking_vxy_max_m_s" in bad["scenarios"]["track_steps"]["failed_checks"]
    assert bad["scenarios"]["safety_nan"]["passed"] is True  # the node's safety does not depend on the policy
    assert good["score"]["passed_all"]
    row = doc["comparison"]["scenarios"]["track_steps"]["metrics"]["tracking_vxy_worst_m_s"]
    assert row["better"] == "spot_flat_mjx" and row["delta"]["spot_flat_mjx"]["significant"]
    # A failed trial comes with a GIF around the failure, inlined into the report.
    media = [t["media"] for t in bad["scenarios"]["track_steps"]["trials"] if t["media"]]
    assert media and (out / media[0]).read_bytes()[:6] == b"GIF89a"
    assert "data:image/gif;base64," in (out / "report.html").read_text()


def test_results_are_the_same_on_any_worker_count_and_on_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """... and with the sim bridge and the policy node in processes of their own, as sim.launch.py
    starts them, instead of composed in one (the default): the node under test is the same."""
    scenarios = [a for n in SUBSET for a in ("--scenario", n)]
    outs = {}
    for name, extra in (
        ("one", ["--workers", "1"]),
        ("two", ["--workers", "2"]),
        ("separate", ["--workers", "2", "--separate-processes"]),
    ):
        outs[name] = tmp_path / name
        assert evaluate("--suite", "quick", *scenarios, *extra, "--out", str(outs[name])) == 0
    with ray_head(cpus=2) as address:
        # The cluster, as Ray starts it, wants a token; the real command given its address sends one only
        # when told (in a process of its own: Ray reads the mode once per process).
        env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
        env["RAY_gcs_server_port_wait_time_s"] = "2"  # Ray's connect retries: 2 s, not 20
        refused = subprocess.run(
            [sys.executable, "-m", "spot_policy_tools.cli", "evaluate", "--quiet", "--suite", "quick",
             "--scenario", "safety_nan", "--ray", address, "--out", str(tmp_path / "refused")],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        err = refused.stderr.strip().splitlines()[-1]
        assert f"--ray {address}: the cluster refused this client's authentication (RAY_AUTH_MODE is unset)" in err
        assert "fix: export RAY_AUTH_MODE=token" in err
        monkeypatch.setenv("RAY_AUTH_MODE", "token")
        outs["ray"] = tmp_path / "ray"
        assert evaluate("--suite", "quick", *scenarios, "--ray", address, "--out", str(outs["ray"])) == 0
    texts = {name: (out / "results.json").read_bytes() for name, out in outs.items()}
    assert texts["one"] == texts["two"] == texts["separate"] == texts["ray"]
    assert (
        sorted(p.name for p in (outs["separate"] / "trials").rglob("*.log"))
        == ["policy_node.log"] * 5 + ["sim_bridge.log"] * 5
    )
    assert {p.name for p in (outs["two"] / "trials").rglob("*.log")} == {"nodes.log"}
    # --workers 2 is two play slots: the pool's four processes start trials, never more than two play.
    for name in ("two", "separate"):
        spans = [t["play_span_s"] for t in json.loads((outs[name] / "timing.json").read_text())["trials"]]
        assert len(spans) == 5 and max_overlap(spans) <= 2, (name, spans)
    doc = json.loads(texts["one"])
    assert doc["complete"] and len(doc["policies"][0]["scenarios"]) == len(SUBSET)
    # Two trials of one scenario differ (seeded initial pose): the spread is real, not a copy.
    trials = doc["policies"][0]["scenarios"]["track_steps"]["trials"]
    assert trials[0]["metrics"]["tracking_vxy_rms_m_s"] != trials[1]["metrics"]["tracking_vxy_rms_m_s"]


def max_overlap(spans: list[list[float]]) -> int:
    """The most intervals [start, end] open at one instant (an end before a start at the same time)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    open_now = most = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


def test_a_play_slot_is_held_by_one_worker_at_a_time_and_given_up_on_halt() -> None:
    """trial.PlaySlot over the real cross-process semaphore and event a local pool shares."""
    import multiprocessing

    from spot_policy_tools.evaluate.trial import PlaySlot

    ctx = multiprocessing.get_context("forkserver")
    slots, halt = ctx.BoundedSemaphore(1), ctx.Event()
    first, second = PlaySlot(slots, halt), PlaySlot(slots, halt)
    assert first.acquire() and first.held
    halt.set()  # interrupted while the only slot is taken: the second gives up instead of waiting
    assert second.acquire() is False and not second.held
    first.release()
    first.release()  # once only: a bounded semaphore would raise on a second release
    halt.clear()
    assert second.acquire() and second.held
    second.release()
    assert PlaySlot(None, None).acquire()  # one worker (or Ray): no slots, plays at once


DRIVER_PROBE = """
import os, sys, time, rclpy
from spot_policy.ros.dds_isolation import claimed_domain, isolate_environment
from spot_policy_tools.evaluate.driver import TrialDriver
from spot_policy_tools.evaluate.trial import TRIAL_DOMAINS

with claimed_domain(TRIAL_DOMAINS) as domain:
    isolate_environment(domain)  # this process: localhost discovery
    rclpy.init(domain_id=domain)
    someone = rclpy.create_node("someone")  # (kept: an unreferenced node is destroyed)
    driver = TrialDriver(domain, dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE=sys.argv[1]))
    end = time.monotonic() + 3.0
    while time.monotonic() < end and "someone" not in driver.node.get_node_names():
        driver.executor.spin_once(timeout_sec=0.05)
    print("someone" in driver.node.get_node_names(), os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"])
"""


@pytest.mark.parametrize(("discovery", "found"), [("LOCALHOST", True), ("OFF", False)])
def test_the_trial_driver_takes_the_nodes_dds_settings(discovery: str, found: bool) -> None:
    """The driver's participant starts with the nodes' DDS environment (trial.py: localhost only, the
    quick-discovery profile), not with the calling process's (a user's shell may have none of it:
    the driver then announced itself to the LAN); the process's own is left as it was. Told
    ``OFF``, it finds no one, though the node beside it in its process is there to be found."""
    done = subprocess.run([sys.executable, "-c", DRIVER_PROBE, discovery], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(found), "LOCALHOST"]


def test_a_ray_address_with_no_cluster_fails_in_seconds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as probe:  # a port nothing listens on (bound, then released)
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()
    assert evaluate("--suite", "quick", "--scenario", "safety_nan", "--ray", address, "--out", str(tmp_path / "a")) == 2
    assert time.monotonic() - started < 20  # Ray alone retries a dead address for minutes
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--ray {address}: no Ray cluster answers there" in err and "fix: start one with 'ray start --head'" in err


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    suite = tmp_path / "bad.yaml"
    suite.write_text(
        "suite: bad\nscenarios:\n  - name: x\n"
        "    commands: [{mode: walk, duration: 2}]\n    environment: {friction: -1}\n"
    )
    assert evaluate("--suite", str(suite), "--out", str(tmp_path / "a")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.yaml: scenarios[0] (x): 'environment.friction' is -1" in err[0] and "fix:" in err[0]
    baseline = tmp_path / "b.json"
    baseline.write_text('{"schema": "something else"}')
    assert evaluate("--baseline", str(baseline), "--out", str(tmp_path / "b")) == 2
    assert "fix: give a results.json" in capsys.readouterr().err
    assert evaluate("--policy", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c")) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert evaluate("--suite", "quick", "--scenario", "nope", "--out", str(tmp_path / "d")) == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_keeps_the_finished_trials(tmp_path: Path, workers: int) -> None:
    """Ctrl-C: no trial starts after it, what finished is kept; in the command's own process (one
    worker) the running trial stops, a worker process finishes the one it runs."""
    out = tmp_path / "eval"
    names = ["low_friction", "payload_5kg", "turn_sidestep", "sensing_noise", "push_walking"][: 3 + 2 * (workers > 1)]
    scenarios = [a for n in names for a in ("--scenario", n)]
    command = [sys.executable, "-m", "spot_policy_tools.cli", "evaluate", "--suite", "quick", *scenarios,
               "--workers", str(workers), "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    deadline = time.monotonic() + 240
    seen = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if f"1/{len(names)} trials" in line:
            proc.send_signal(signal.SIGINT)
            break
    _stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, seen + stderr
    doc = results(out)
    assert doc["complete"] is False
    trials = sum(len(s["trials"]) for s in doc["policies"][0]["scenarios"].values())
    # Two workers: the other worker's first trial finishes; trials that took a finished one's place
    # before the signal came finish too; the last never starts.
    assert trials == 1 if workers == 1 else 2 <= trials < len(names)
    assert (out / "report.html").is_file()
