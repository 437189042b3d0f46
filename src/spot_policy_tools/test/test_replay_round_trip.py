"""Record now, replay now: fresh recordings of runs that differ in what makes timing matter.

Golden bags prove little about today's recorder; these record with today's nodes and replay at once.
Lockstep runs must replay within 1e-6; a real-time run may lose a best-effort sensor message in the
recorder, and then the replay must say exactly which message, never compare something else.
(The main job's default profile and the robot path on the emulator are replayed in
tests/test_main_job.py and tests/test_robot_job.py, where those runs are made.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from spot_policy.core.loader import load_policy
from spot_policy_tools.replay import ReplayError, read_recording, recorded_policy, replay

from policy_fixtures import make_run
from round_trip import calm_random_run, record_choppy, replay_or_reason

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random network: it need not walk, only be replayed exactly (it runs on every walk step)."""
    return calm_random_run(tmp_path_factory.mktemp("logs"))


@pytest.mark.slow
def test_a_fresh_lockstep_recording_with_command_changes_and_mode_switches_replays_exactly(
    policy: Path, tmp_path: Path
) -> None:
    rec = read_recording(record_choppy(tmp_path / "run", policy, "--lockstep"))
    requests = [p.event["requested"] for p in rec.points if p.kind == "request"]
    switches = [r for i, r in enumerate(requests) if i == 0 or r != requests[i - 1]]
    assert switches == ["stand", "walk", "stand", "walk", "idle", "stand"], requests
    report = replay(rec, recorded_policy(rec))
    assert report.passed, report.first_divergence
    assert report.steps > 200
    # Every command the profile sent reached the step that used it: the commanded values seen by the
    # policy (observation term velocity_commands) match the node's exactly.
    velocity_commands = report.obs_terms.index("velocity_commands")
    assert report.obs_max[velocity_commands] == 0.0


@pytest.mark.slow
def test_a_fresh_realtime_recording_replays_or_names_the_message_the_recorder_lost(
    policy: Path, tmp_path: Path
) -> None:
    report = replay_or_reason(record_choppy(tmp_path / "run", policy), exact=False)
    assert report is None or report.passed, report.first_divergence


def test_a_fresh_fault_run_replays_exactly(tmp_path: Path) -> None:
    """The policy node (timer trigger, sim time) driven over DDS by a scripted bridge that stops
    sending imu/data: the node faults; the replay must reach the same fault by itself."""
    sys.path.insert(0, str(GOLDEN))
    import make_golden

    make_golden.make_scripted(tmp_path, "stale_imu", compact_into=tmp_path / "compact")
    rec = read_recording(tmp_path / "compact" / "stale_imu")
    report = replay(rec, load_policy(GOLDEN / "policy", providers=["cpu"], log=lambda _m: None))
    assert report.passed, report.first_divergence
    assert not report.event_mismatches
    assert any('"level": "error"' in line and "imu" in line for line in events_of(rec))


def events_of(rec) -> list[str]:
    import json

    return [json.dumps(p.event) for p in rec.points if p.event]


def test_replay_without_policy_uses_the_recorded_one_and_says_when_it_is_gone(tmp_path: Path) -> None:
    golden = read_recording(GOLDEN / "stale_imu")
    start = dict(golden.start or {})
    # As recorded on another machine: the paths are not here, the shipped name is not either.
    start.update(policy_arg="/elsewhere/logs/run", policy="/elsewhere/logs/run", onnx="/elsewhere/policy.onnx")
    golden.start = start
    with pytest.raises(ReplayError, match=r"the recorded policy is not here unchanged .*fix: --policy PATH"):
        recorded_policy(golden)
    # A different file where the recording points: refused with both hashes named.
    other = make_run(tmp_path / "logs")
    start.update(policy_arg=str(other))
    with pytest.raises(ReplayError, match=r"its ONNX differs \(SHA-256 [0-9a-f]{12}, recorded [0-9a-f]{12}\)"):
        recorded_policy(golden)
