"""The robot path end to end: `spot-policy robot --emulator` — hw bridge, policy node, profile player
and recorder as processes over DDS, bosdyn-client over TLS gRPC to the Spot API emulator (MuJoCo body)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from spot_policy.core import paths

from policy_fixtures import make_run
from round_trip import replay_or_reason

EXE = Path(sys.executable).with_name("spot-policy")
SHIPPED = paths.config_dir() / "policies" / "spot_flat_mjx"
pytestmark = [pytest.mark.ros, pytest.mark.slow]
#: The issue's acceptance thresholds for the robot path (mean-velocity tracking errors).
MAX_VXY_ERROR, MAX_WZ_ERROR = 0.15, 0.2

MECHANICS_PROFILE = """\
name: mechanics
settle_s: 0.5
segments:
  - {name: stand, mode: stand, duration: 2.0}
  - {name: walk, mode: walk, duration: 1.5, cmd_vel: [0.3, 0.0, 0.0]}
  - {name: stop, mode: stop, duration: 0.5}
"""


def run_robot_job(out: Path, *args: str, timeout: float = 240) -> tuple[dict, str]:
    done = subprocess.run(
        [str(EXE), "robot", "--emulator", "--out", str(out), *args], capture_output=True, text=True, timeout=timeout
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:] + _log_tail(out)
    return json.loads((out / "summary.json").read_text()), output


#: What the robot path logs when this machine (not the code) stalled past a safety margin: the bridge's
#: link-latency check (state over 50 ms late) or state-stream timeout, the policy node's 60 ms watchdog.
STALL_MARKS = ("link latency too high", "robot state stream lost", "is stale (")


def _stall_in(out: Path) -> str | None:
    for name in ("hw_bridge.log", "policy_node.log"):
        log = out / "logs" / name
        if log.is_file():
            for line in log.read_text().splitlines():
                if any(mark in line for mark in STALL_MARKS):
                    return line
    return None


class PauseWitness:
    """A thread of the otherwise idle test process that sleeps 2 ms at a time and notes every wake-up
    over ``threshold_s`` late: independent evidence that the machine itself paused during a run."""

    def __init__(self, threshold_s: float = 0.04) -> None:
        self.threshold_s = threshold_s
        self.pauses_s: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pause_witness", daemon=True)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.002):
            now = time.monotonic()
            if now - last > self.threshold_s:
                self.pauses_s.append(now - last)
            last = now

    def __enter__(self) -> PauseWitness:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1)


#: Runs of a robot job test at most: a further run only after a detected machine stall.
MAX_RUNS = 3


def run_checked(
    tmp_path: Path,
    check: Callable[[Path], None],
    max_runs: int = MAX_RUNS,
    witness: Callable[[], PauseWitness] = PauseWitness,
) -> None:
    """Run ``check(run_folder)``; again (up to ``max_runs`` in all) only while each failed run failed
    after the bridge or the policy node detected a stall and took its safe behaviour.

    The 2 shared cores of a CI VM run the emulator's physics, the bridge, the policy node, the
    recorder and the player in real time, and the VM itself pauses: a process that only sleeps wakes
    50-110 ms late, a few times a minute in some spells and not at all in others, over the bridge's
    50 ms link-latency limit and the policy's 60 ms input watchdog. Any other failure fails at once.
    When every run failed after a detected stall, the test is an expected failure (xfail) only if the
    pause witness saw this machine pause during each of them; otherwise it fails.
    """
    failed: list[tuple[str, list[float]]] = []
    for attempt in range(1, max_runs + 1):
        out = tmp_path / ("run" if attempt == 1 else f"run_{attempt}")
        with witness() as seen:
            try:
                check(out)
                return
            except AssertionError:
                stall = _stall_in(out)
                if stall is None:
                    raise
                failed.append((stall, seen.pauses_s))
                if attempt == max_runs:
                    if all(pauses for _, pauses in failed):
                        seen_by_run = "; ".join(
                            f"run {i}: {len(p)}, longest {max(p) * 1e3:.0f} ms" for i, (_, p) in enumerate(failed, 1)
                        )
                        pytest.xfail(
                            f"this machine paused in all {max_runs} runs (pauses seen by an idle thread: "
                            f"{seen_by_run}), and the robot path took its safe behaviour each time: {failed[-1][0]}"
                        )
                    raise
        # A warning, so that CI's summary shows every repeat even when the test passes.
        warnings.warn(f"robot job run {attempt} failed after a detected machine stall, running again: {stall}",
                      stacklevel=2)  # fmt: skip


def _log_tail(out: Path) -> str:
    log = out / "logs" / "hw_bridge.log"
    return "\n--- hw_bridge.log ---\n" + "\n".join(log.read_text().splitlines()[-15:]) if log.is_file() else ""


def test_the_robot_path_runs_a_profile_on_the_emulator_and_returns_the_lease(tmp_path: Path) -> None:
    """The mechanics, with a stand-in policy (its network does not walk): bring-up through
    bosdyn-client, joint control streaming, the run folder of the sim job, a clean shutdown."""
    profile = tmp_path / "mechanics.yaml"
    profile.write_text(MECHANICS_PROFILE)
    policy = make_run(tmp_path / "logs")
    run_checked(tmp_path, lambda out: check_mechanics(out, profile, policy))


def check_mechanics(out: Path, profile: Path, policy: Path) -> None:
    summary, output = run_robot_job(out, "--profile", str(profile), "--policy", str(policy))
    assert summary["mode"] == "robot (emulator)" and [s["name"] for s in summary["segments"]] == [
        "stand",
        "walk",
        "stop",
    ]
    robot = summary["robot"]
    assert robot["lease_returned"], robot
    # One command per state message while the policy publishes (stand + walk: 3.5 s at ~333 Hz, less
    # whatever a loaded machine's link hiccups cost: the bridge then stands and resumes a second later).
    assert robot["joint_commands"] > 200, robot
    assert robot["joint_commands_expired_on_arrival"] <= 0.05 * robot["joint_commands"], robot
    assert robot["state_messages"] > 1000 and robot["final_behaviour"] == "stand"
    for name in ("summary.json", "tracking.png", "video.mp4", "bag/metadata.yaml", "logs/hw_bridge.log"):
        assert (out / name).is_file(), name
    log = (out / "logs" / "hw_bridge.log").read_text()
    assert "joint control active" in log and "shut down: lease returned" in log
    with Reader(out / "bag") as reader:
        topics = {c.topic for c in reader.connections}
    assert {"/joint_states", "/imu/data", "/odom", "/joint_command", "/cmd_vel", "/profile/segment"} <= topics
    assert "lease returned: True" in output
    # A robot recording replays through the same command (real time: exactly, or the replay names
    # the best-effort message the recorder lost).
    report = replay_or_reason(out / "bag", exact=False)
    assert report is None or (report.passed and report.walk_steps > 20), report.first_divergence


@pytest.mark.skipif(
    not SHIPPED.is_dir(),
    reason="config/policies/spot_flat_mjx (the walking policy) is not shipped yet: this acceptance waits for it",
)
def test_shipped_policy_walks_the_default_profile_on_the_emulator(tmp_path: Path) -> None:
    run_checked(tmp_path, check_walks_the_default_profile)


def check_walks_the_default_profile(out: Path) -> None:
    summary, output = run_robot_job(out, "--no-video", timeout=400)
    assert not summary["fell"], summary["min_base_height_m"]
    # The hand-over from Spot's own stand (issue 15), before tracking (which a machine stall may spoil).
    check_hand_over(out / "bag")
    moving = [s for s in summary["segments"] if s["moving"]]
    assert [s["name"] for s in moving] == ["forward", "turn", "sidestep"]
    for s in moving:
        assert s["tracking_error"]["vxy_m_s"] <= MAX_VXY_ERROR, s
        assert s["tracking_error"]["wz_rad_s"] <= MAX_WZ_ERROR, s
    robot = summary["robot"]
    assert robot["lease_returned"], robot
    assert "Spot API emulator summary:" in output and (out / "logs" / "emulator.log").is_file()


#: A standing Spot's knee carries ~15-25 N*m: its hand-over offset at the policy's kp 60 is below this.
MAX_HAND_OVER_RAD = 0.45
#: The soft start's first step goes 1/25 of the way to the policy's target (within ~1.2 rad of q*).
MAX_FIRST_STEP_RAD = 0.05


def check_hand_over(bag: Path) -> None:
    """From Spot's own stand the node's stand publishes nothing (the robot's stand keeps it); the first
    target, at walk, lies within 1/N of the way from the documented rule's q* = q + (tau + kd dq) / kp
    of the very joint_states the node used (its walk request names them), and q* within
    MAX_HAND_OVER_RAD of the measured pose; the soft start adds no step larger than the policy's own."""
    from spot_policy.core import contract
    from spot_policy.core.loader import load_spec
    from spot_policy.core.locate import locate_run

    spec = load_spec(locate_run(SHIPPED))
    h = read_hand_over(bag)
    targets, times = h["targets"], h["times"]
    assert times[0] >= h["walk"]["t_ns"] - 50_000_000, "the stand published targets: it took Spot's stand over"
    q, dq, tau = h["states"][h["walk"]["inputs"]["joint_states"][1]]
    q_star = np.clip(q + (tau + spec.damping * dq) / spec.stiffness, spec.joint_lower, spec.joint_upper)
    joint = contract.ISAAC_JOINT_ORDER[int(np.argmax(np.abs(q_star - q)))]
    assert np.max(np.abs(q_star - q)) <= MAX_HAND_OVER_RAD, (joint, q_star - q)
    assert np.max(np.abs(targets[0] - q_star)) <= MAX_FIRST_STEP_RAD, targets[0] - q_star
    steps = np.abs(np.diff(targets, axis=0)).max(axis=1)
    soft = round(0.5 / spec.control_dt)
    assert steps[:soft].max() <= steps[soft:].max(), (steps[:soft], steps[soft:].max())


def read_hand_over(bag: Path) -> dict:
    """From a robot job's bag: the first accepted stand and walk requests (the node's events), every
    joint_states by stamp (position, velocity, effort) and the joint_command targets, Isaac order."""
    import json

    from rosbags.typesys import Stores, get_typestore

    from spot_policy.core import contract

    store = get_typestore(Stores.ROS2_HUMBLE)

    def by_name(names, values) -> np.ndarray:
        named = {contract.canonical_joint_name(n): v for n, v in zip(names, values, strict=True)}
        return np.array([named[j] for j in contract.ISAAC_JOINT_ORDER], dtype=float)

    found: dict = {"stand": None, "walk": None, "states": {}}
    targets, times = [], []
    with Reader(bag) as reader:
        for connection, t_ns, raw in reader.messages():
            topic = connection.topic
            if topic == "/policy_node/events":
                event = json.loads(store.deserialize_cdr(raw, connection.msgtype).data)
                wanted = event.get("requested")
                if event.get("event") == "request" and event.get("accepted") and found.get(wanted, 0) is None:
                    found[wanted] = event
            elif topic in ("/joint_states", "/joint_command"):
                msg = store.deserialize_cdr(raw, connection.msgtype)
                if topic == "/joint_command":
                    targets.append(by_name(msg.name, msg.position))
                    times.append(t_ns)
                else:
                    stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                    found["states"][stamp] = tuple(
                        by_name(msg.name, v) for v in (msg.position, msg.velocity, msg.effort)
                    )
    assert found["stand"] is not None and found["walk"] is not None, "no accepted stand and walk in the bag"
    return {**found, "targets": np.array(targets), "times": np.array(times)}


def test_a_run_is_repeated_only_after_a_detected_machine_stall(tmp_path: Path) -> None:
    calls: list[str] = []

    def check(log_line: str) -> Callable[[Path], None]:
        def run(out: Path) -> None:
            calls.append(out.name)
            (out / "logs").mkdir(parents=True)
            (out / "logs" / "hw_bridge.log").write_text(log_line + "\n")
            if out.name == "run":
                raise AssertionError("tracking 0.69 > 0.2")

        return run

    with pytest.warns(UserWarning, match="run 1 failed after a detected machine stall"):
        run_checked(tmp_path / "a", check("[ERROR] [hw_bridge]: link latency too high: state messages arrive 67 ms"))
    assert calls == ["run", "run_2"]
    calls.clear()
    with pytest.raises(AssertionError, match="tracking"):
        run_checked(tmp_path / "b", check("[INFO] [hw_bridge]: joint control active"))
    assert calls == ["run"]


class _FakeWitness(PauseWitness):
    def __init__(self, pauses: list[float]) -> None:
        super().__init__()
        self.pauses_s = list(pauses)

    def __enter__(self) -> PauseWitness:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass


def _stalled(calls: list[str]) -> Callable[[Path], None]:
    def run(out: Path) -> None:
        calls.append(out.name)
        (out / "logs").mkdir(parents=True)
        (out / "logs" / "policy_node.log").write_text("[ERROR] FAULT: joint_states is stale (0.061 s old)\n")
        raise AssertionError("tracking 0.69 > 0.2")

    return run


def test_a_stall_in_every_run_fails_unless_the_machine_was_seen_pausing(tmp_path: Path) -> None:
    calls: list[str] = []
    with pytest.raises(AssertionError, match="tracking"), pytest.warns(UserWarning, match="machine stall"):
        run_checked(tmp_path / "a", _stalled(calls), max_runs=3, witness=lambda: _FakeWitness([]))
    assert calls == ["run", "run_2", "run_3"]
    calls.clear()
    with pytest.raises(pytest.xfail.Exception, match="paused in all 2 runs"), pytest.warns(UserWarning):
        run_checked(tmp_path / "b", _stalled(calls), max_runs=2, witness=lambda: _FakeWitness([0.09]))
    assert calls == ["run", "run_2"]


def test_the_pause_witness_sees_a_blocked_thread() -> None:
    interval = sys.getswitchinterval()
    with PauseWitness(threshold_s=0.04) as witness:
        time.sleep(0.05)
        sys.setswitchinterval(1.0)  # this thread keeps the GIL: the witness cannot run, as if paused
        try:
            blocker_end = time.monotonic() + 0.15
            while time.monotonic() < blocker_end:
                pass
        finally:
            sys.setswitchinterval(interval)
        time.sleep(0.05)
    assert witness.pauses_s and max(witness.pauses_s) >= 0.1, witness.pauses_s
