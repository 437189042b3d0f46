"""Every node shuts down cleanly on one or several SIGINT/SIGTERM (issue 13).

A terminal's Ctrl-C signals every process of the group and ``ros2 launch`` then sends its own
SIGINT; systemd sends SIGTERM. Each node here is started as ``ros2 run`` / the launch file would
(its executable, node name and parameter files from the bring-up specs), left to start, then sent a
burst of signals: it must exit 0 within the bound with no traceback. The robot bridge is tested the
same way, while walking on the emulator, in src/spot_hw_bridge/test/test_hw_bridge_node.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spot_policy.ros import bringup

pytestmark = [pytest.mark.ros, pytest.mark.slow]
#: A node's own clean stop (no robot behind it) ends within this.
BOUND_S = 10.0


def specs(tmp_path: Path) -> dict[str, bringup.NodeSpec]:
    sim = {s.name: s for s in bringup.sim_nodes("spot_flat_mjx", realtime=True, teleop=True)}
    return {
        "sim_bridge": sim["sim_bridge"],
        "policy_node": sim["policy_node"],
        "teleop": sim["teleop"],
        "recorder": bringup.recorder(tmp_path / "bag"),
        "profile_player": bringup.profile_player("default"),
    }


@pytest.mark.parametrize("name", ["sim_bridge", "policy_node", "teleop", "recorder", "profile_player"])
def test_a_burst_of_signals_ends_the_node_cleanly(name: str, tmp_path: Path) -> None:
    spec = specs(tmp_path)[name]
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen(spec.command(), stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        # Started: its first log line (each node says what it runs), or 20 s.
        end = time.monotonic() + 20.0
        while time.monotonic() < end and proc.poll() is None and not log.read_text().strip():
            time.sleep(0.1)
        time.sleep(1.0)
        assert proc.poll() is None, log.read_text()
        started = time.monotonic()
        for i in range(12):  # Ctrl-C, launch's own SIGINT, an impatient user, systemd's SIGTERM
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGTERM if i % 3 == 2 else signal.SIGINT)
            time.sleep(0.03)
        code = proc.wait(timeout=BOUND_S + 5)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    assert took < BOUND_S, f"{took:.1f} s"
    if name == "recorder":  # and the bag it wrote is whole
        assert (tmp_path / "bag" / "metadata.yaml").is_file(), output[-2000:]


HANGING_STOP = """
import sys, time
from spot_policy.ros.node_main import StopSignals
StopSignals.STUCK_AFTER_S = 0.5
stop = StopSignals("hanging").install()
print("ready", flush=True)
while not stop.requested:
    time.sleep(0.01)
def shutdown_that_hangs():
    time.sleep(2.0)
shutdown_that_hangs()
stop.ignore_from_now()
print("stopped", flush=True)
"""


def stop_with_sigint(script: str) -> tuple[int, str, str]:
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=BOUND_S)
    return proc.returncode, out, err


def test_a_stop_that_hangs_leaves_the_threads_stacks_in_the_log() -> None:
    """A node whose shutdown does not end writes where it is stuck (the function, the line) to its
    log, before the job's SIGKILL; a stop that ends in time writes nothing of the kind."""
    code, out, err = stop_with_sigint(HANGING_STOP)
    assert code == 0 and "stopped" in out, err
    assert "most recent call first" in err and "shutdown_that_hangs" in err, err
    code, out, err = stop_with_sigint(HANGING_STOP.replace("time.sleep(2.0)", "pass"))
    assert code == 0 and "stopped" in out and "most recent call first" not in err, err
