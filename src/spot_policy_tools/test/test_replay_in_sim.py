"""``spot-policy replay BAG --in-sim``: a log's commands played into MuJoCo from the log's first pose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spot_policy_tools import cli
from spot_policy_tools.replay import read_recording
from spot_policy_tools.replay_in_sim import BASE_SIGNALS, initial_pose, log_timeline, profile_from_log

from round_trip import calm_random_run, record_choppy

GOLDEN = Path(__file__).resolve().parent / "golden"
CONTROL_DT = 0.02
#: How late a mode switch or command may reach the sim's node (both runs real time, on a shared
#: 2-core machine): a player tick (20 ms) and a service round trip.
LATENCY_S = 0.1


def test_the_profile_asks_for_what_the_logged_node_had() -> None:
    """The robot log (emulator, stand profile): one stand segment from the first request to the end."""
    rec = read_recording(GOLDEN / "robot_emulator")
    timeline = log_timeline(rec)
    profile = profile_from_log(timeline, CONTROL_DT)
    assert profile["segments"][0]["mode"] == "stand"
    total = sum(s["duration"] for s in profile["segments"])
    assert total == pytest.approx(timeline.times[-1] + CONTROL_DT, abs=CONTROL_DT)
    pose = dict(kv.split("=") for kv in initial_pose(rec, timeline.t0_ns).split(","))
    assert len(pose) == 12 and all(np.isfinite(float(v)) for v in pose.values())


@pytest.mark.slow
def test_in_sim_drives_the_sim_with_the_logged_commands_from_the_logged_pose(tmp_path: Path) -> None:
    # A real-time log, as a robot's is (in lockstep the log's own commands land late in sim time).
    bag = record_choppy(tmp_path / "run", calm_random_run(tmp_path / "logs"))
    out = tmp_path / "in_sim"
    assert cli.main(["replay", str(bag), "--in-sim", "--out", str(out)]) == 0
    report = json.loads((out / "in_sim.json").read_text())
    assert set(BASE_SIGNALS) | {"joint_pos", "joint_target"} <= set(report["rms"]), report["rms"]
    assert report["window_s"][1] > 5.0 and not report["notes"]
    assert (out / "in_sim.png").stat().st_size > 10_000
    # The sim's policy node had the log's modes and commands at the log's times: the same at every
    # record but the ones within LATENCY_S of a change (a profile tick and a service call apart).
    log, sim = log_timeline(read_recording(bag)), log_timeline(read_recording(out / "sim" / "bag"))
    changed = np.any(np.diff(log.commands, axis=0) != 0, axis=1) | (np.array(log.modes[1:]) != np.array(log.modes[:-1]))
    changes = log.times[1:][changed]
    for t, mode, cmd in zip(log.times, log.modes, log.commands, strict=True):
        if np.min(np.abs(changes - t)) <= LATENCY_S or t > sim.times[-1]:
            continue
        k = int(np.argmin(np.abs(sim.times - t)))
        assert sim.modes[k] == mode and np.array_equal(sim.commands[k], cmd), (t, mode, cmd, sim.times[k])
    # It started where the logged robot stood when the node took over.
    wanted = dict(kv.split("=") for kv in report["initial_pose"].split(","))
    first = read_recording(out / "sim" / "bag").inputs["joint_states"][0]
    assert first.stamp_ns == 0  # recorded from its first instant (the bridge waited for its readers)
    got = dict(zip(first.values[0], first.values[1], strict=True))
    for joint, value in wanted.items():
        assert got[joint] == pytest.approx(float(value), abs=0.05), joint
