"""A process dying leaves the others safe (issue 14).

Each process of a running job is killed outright (SIGKILL: no clean-up of its own) in turn, in a
job of its own: the sim job's bridge, policy node, profile player and recorder; the robot job's
hw bridge and policy node, and the robot job itself (it runs the Spot API emulator and supervises
the nodes). What remains must reach its defined safe state within its bound (docs/FAULTS.md), the
job must end saying which process died, no process may be left running, and the bag written so far
must be readable up to the kill (``spot-policy recover`` when the recorder was the one killed).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rosbags.rosbag2 import Reader

from spot_policy.ros.bag_recorder import recover_bag

pytestmark = [pytest.mark.ros, pytest.mark.slow]
EXE = Path(sys.executable).with_name("spot-policy")
#: Walk long enough to be killed mid-walk.
PROFILE = """
name: long_walk
settle_s: 1.0
segments:
  - {name: stand, mode: stand, duration: 2.0}
  - {name: walk, mode: walk, duration: 60.0, cmd_vel: [0.3, 0.0, 0.0]}
"""
#: The job notices a dead process within its 0.2 s poll and stops the rest (each gets 5 s to stop).
JOB_END_S = 20.0


def children(pid: int) -> dict[str, int]:
    """Node name -> pid of the job's node processes (its children)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
            continue
        for arg in cmdline:
            if arg.startswith(b"__node:="):
                found[arg.split(b"=", 1)[1].decode()] = int(entry.name)
    return found


def run_and_kill(tmp_path: Path, job: list[str], victim: str) -> tuple[int, str, Path, float]:
    """Start ``spot-policy JOB``, kill ``victim`` (a node name, or "job") 3 s into the walk.

    Returns the job's exit status, its output, the run folder and the seconds the policy node had
    been publishing when the victim was killed: from the stand's start in simulation, from the walk's
    on the robot (a stand from Spot's own posture leaves the robot to its controller and publishes
    nothing: the hand-over rule, docs/JETSON.md)."""
    profile = tmp_path / "long_walk.yaml"
    profile.write_text(PROFILE)
    out = tmp_path / "run"
    log = tmp_path / "job.log"
    cmd = [str(EXE), *job, "--profile", str(profile), "--out", str(out), "--no-video"]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    nodes: dict[str, int] = {}
    target = proc.pid
    try:
        standing = wait_for_line(proc, log, "segment 1/2")
        walking = wait_for_line(proc, log, "segment 2/2")
        if "robot" in job:
            standing = walking
        time.sleep(3.0)  # walking
        end = time.monotonic() + 5.0  # /proc is read while processes come and go: look again if need be
        nodes = children(proc.pid)
        while victim != "job" and victim not in nodes and time.monotonic() < end:
            time.sleep(0.1)
            nodes = children(proc.pid)
        assert victim == "job" or victim in nodes, nodes
        target = proc.pid if victim == "job" else nodes[victim]
        os.kill(target, signal.SIGKILL)
        publishing_s = time.monotonic() - standing
        code = proc.wait(timeout=JOB_END_S + 10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Nothing left running: every node ended with the job (or, the job killed, by its parent-death signal).
    deadline = time.monotonic() + JOB_END_S
    while any(Path(f"/proc/{p}").exists() for p in nodes.values() if p != target) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [n for n, p in nodes.items() if p != target and Path(f"/proc/{p}").exists()]
    assert not left, f"left running: {left}"
    return code, log.read_text(), out, publishing_s


def wait_for_line(proc: subprocess.Popen, log: Path, text: str, timeout: float = 90.0) -> float:
    end = time.monotonic() + timeout
    while text not in log.read_text() and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None and text in log.read_text(), log.read_text()[-3000:]
    return time.monotonic()


def node_log(out: Path, name: str) -> str:
    return (out / "logs" / f"{name}.log").read_text(errors="replace")


def assert_clean_stop(out: Path, names: list[str]) -> None:
    """The survivors stopped cleanly (exit 0, no traceback)."""
    for name in names:
        text = node_log(out, name)
        assert "Traceback" not in text and "KeyboardInterrupt" not in text, f"{name}:\n{text[-2000:]}"


def commands_in_bag(bag: Path, tmp_path: Path, recover: bool) -> int:
    """joint_command messages the bag holds (it must be readable, after recovery when its recorder
    was the one killed)."""
    if recover:
        assert not (bag / "metadata.yaml").exists()  # as a killed recorder leaves it
        recover_bag(bag, tmp_path / "recovered")
        bag = tmp_path / "recovered"
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == "/joint_command"]
        return sum(1 for _ in reader.messages(connections=conns))


def assert_bag_reaches_the_kill(bag: Path, tmp_path: Path, publishing_s: float, recover: bool) -> None:
    """The policy node publishes 50 joint_commands a second from the stand on: the bag holds them up
    to the kill, less the recorder's last unwritten chunk (a couple of seconds) when it was killed,
    with slack for a loaded machine."""
    lost_s = 3.0 if recover else 0.5
    n = commands_in_bag(bag, tmp_path, recover)
    assert n >= 0.7 * 50 * (publishing_s - lost_s), (n, publishing_s)


@pytest.mark.parametrize("victim", ["sim_bridge", "policy_node", "profile_player", "recorder"])
def test_sim_job_survives_a_killed_process(victim: str, tmp_path: Path) -> None:
    code, output, out, publishing_s = run_and_kill(tmp_path, ["sim"], victim)
    assert code == 1 and f"{victim} exited with -9" in output, output[-2000:]
    survivors = [n for n in ("sim_bridge", "policy_node", "profile_player", "recorder") if n != victim]
    assert_clean_stop(out, survivors)
    if victim == "policy_node":  # the bridge takes its command-loss behaviour within 0.1 s (sim time)
        assert re.search(r"no joint_command for 0\.1\d* s", node_log(out, "sim_bridge")), node_log(out, "sim_bridge")
    assert_bag_reaches_the_kill(out / "bag", tmp_path, publishing_s, recover=victim == "recorder")


@pytest.mark.parametrize("victim", ["hw_bridge", "policy_node", "job"])
def test_robot_job_survives_a_killed_process(victim: str, tmp_path: Path) -> None:
    code, output, out, publishing_s = run_and_kill(tmp_path, ["robot", "--emulator"], victim)
    if victim == "job":
        assert code == -signal.SIGKILL
        # The nodes got SIGTERM when the job (and the emulated robot in it) died: the bridge tried
        # its safe stop against a robot that is gone, and every node ended on its own.
        text = node_log(out, "hw_bridge")
        assert "stopped (SIGTERM)" in text or "shut down" in text, text[-2000:]
        assert_clean_stop(out, ["hw_bridge", "policy_node", "profile_player", "recorder"])
        return
    assert code == 1 and f"{victim} exited with -9" in output, output[-2000:]
    survivors = [n for n in ("hw_bridge", "policy_node", "profile_player", "recorder") if n != victim]
    assert_clean_stop(out, survivors)
    if victim == "policy_node":  # joint_command stops: the bridge stops streaming and stands the robot
        assert "no joint_command for" in node_log(out, "hw_bridge")
        assert "shut down: lease returned" in node_log(out, "hw_bridge")
    if victim == "hw_bridge":  # the robot's own safety: its last joint command expires (it then stands)
        account = re.search(r"robot side: final behaviour (\w+), joint control expiries (\d+)", output)
        assert account and (account[1] == "stand" or int(account[2]) >= 1), output[-2000:]
    assert_bag_reaches_the_kill(out / "bag", tmp_path, publishing_s, recover=False)


#: A job with other threads (here a gRPC server's, as the robot job's emulator) starts a node, then
#: dies: the node must run no Python of the job's between fork and exec, and must still end.
THREADED_JOB = """
import os, pathlib, sys, time, types
from concurrent import futures

import grpc

from spot_policy_tools.launcher import NodeProcess

marker = pathlib.Path(sys.argv[1])
os.register_at_fork(after_in_child=lambda: marker.write_text("the forked child ran Python"))
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
server.add_insecure_port("127.0.0.1:0")
server.start()
spec = types.SimpleNamespace(name="sleeper", command=lambda: [sys.executable, "-c", "import time; time.sleep(60)"])
node = NodeProcess(spec, pathlib.Path(sys.argv[2]), dict(os.environ))
print(node.proc.pid, flush=True)
time.sleep(60)
"""


def test_a_node_of_a_threaded_job_is_started_without_python_in_the_fork_and_ends_with_the_job(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "at_fork"
    job = subprocess.Popen(
        [sys.executable, "-c", THREADED_JOB, str(marker), str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        node = int(job.stdout.readline())
        assert node > 0 and Path(f"/proc/{node}").exists()
        assert not marker.exists(), marker.read_text()  # forked by vfork, no at-fork handlers: nothing to abort
        job.kill()
        job.wait(timeout=10)
        deadline = time.monotonic() + 10
        while alive(node) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(node), "the node outlived its job (no parent-death signal)"
    finally:
        if job.poll() is None:
            job.kill()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_group_stop_kills_a_stuck_node_after_its_grace(tmp_path: Path) -> None:
    """A node that ignores SIGINT and SIGTERM (as one stuck in its DDS clean-up, where no Python
    handler runs) is killed after two graces, and named on stderr."""
    from types import SimpleNamespace

    from spot_policy_tools.launcher import NodeGroup

    stuck = (
        "import signal, time; [signal.signal(s, signal.SIG_IGN) for s in (2, 15)]; "
        "print('up', flush=True); time.sleep(60)"
    )
    group = NodeGroup(tmp_path)
    node = group.start(SimpleNamespace(name="stuck", command=lambda: [sys.executable, "-c", stuck]))
    deadline = time.monotonic() + 10
    while "up" not in (tmp_path / "stuck.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    codes = group.stop(together=True, grace_s=0.3)
    assert codes == {"stuck": -signal.SIGKILL} and node.poll() == -signal.SIGKILL
    assert 0.5 < time.monotonic() - started < 3.0
