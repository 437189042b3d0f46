"""``spot-policy sim`` driven by hand: the keyboard teleop through a pseudo-terminal, end to end.

The job runs as a user starts it, with its terminal a pty: the test reads the legend and the
status line and types keys (stand, walk, forward x5, quit) like a person; the shipped policy walks
Spot forward in the lockstep sim, the recorded bag shows it, and the terminal comes back sane.
Also: ``--teleop gamepad`` on a machine without a pad says so in one line.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
from rosbags.rosbag2 import Reader

from spot_policy.ros.bag_recorder import default_typestore, deserialize_cdr

pytestmark = pytest.mark.ros
SPOT_POLICY = str(Path(sys.prefix) / "bin" / "spot-policy")


class Terminal:
    """A process on a pty: what it wrote so far, and keys to type."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        self.slave_attrs: list | None = None
        self._text = ""
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready:
                if self.proc.poll() is not None:
                    return
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._text += data.decode(errors="replace")

    @property
    def text(self) -> str:
        with self._lock:
            return self._text

    def wait_for(self, pattern: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if re.search(pattern, self.text):
                return True
            if self.proc.poll() is not None:
                return bool(re.search(pattern, self.text))
            time.sleep(0.05)
        return False

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())


def test_keyboard_drives_the_sim_through_a_terminal(tmp_path: Path) -> None:
    out = tmp_path / "run"
    term = Terminal([SPOT_POLICY, "sim", "--teleop", "keyboard", "--lockstep", "--no-video", "--out", str(out)])
    try:
        assert term.wait_for(r"Spot keyboard teleop", 60), term.text[-2000:]
        assert "w / s" in term.text and "1 stand" in term.text  # the legend
        # The policy node needs a few seconds to start: press stand until it answers.
        deadline = time.monotonic() + 60
        while not re.search(r"mode standing", term.text) and time.monotonic() < deadline:
            term.type("1")
            term.wait_for(r"mode standing", 1.0)
        assert re.search(r"mode standing", term.text), term.text[-1500:]
        time.sleep(1.0)
        term.type("2")
        assert term.wait_for(r"mode walking", 10), term.text[-1500:]
        term.type("wwwww")
        assert term.wait_for(r"vx \+0\.5 m/s", 5), term.text[-1500:]
        time.sleep(6.0)  # lockstep: many seconds of sim time
        term.type("\x1b")  # Esc: quit
        assert term.proc.wait(timeout=60) == 0, term.text[-2000:]
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    assert f"run folder: {out}" in term.text
    attrs = termios.tcgetattr(term.master)
    assert attrs[3] & termios.ECHO, "the terminal was left in raw mode"

    typestore = default_typestore()
    odom_x, commands = [], []
    with Reader(out / "bag") as reader:
        for conn, _, raw in reader.messages():
            if conn.topic == "/odom":
                odom_x.append(deserialize_cdr(typestore, raw, conn.msgtype).pose.pose.position.x)
            elif conn.topic == "/cmd_vel":
                commands.append(deserialize_cdr(typestore, raw, conn.msgtype).linear.x)
        topics = {c.topic for c in reader.connections}
    assert {"/robot_description", "/tf", "/tf_static"} <= topics
    assert max(commands) == pytest.approx(0.5) and commands[-1] == 0.0  # quitting sends a zero command
    walked = odom_x[-1] - odom_x[0]
    print(f"keyboard vx 0.5 m/s: walked {walked:.2f} m")
    assert walked > 1.0


def test_gamepad_missing_is_one_line(tmp_path: Path) -> None:
    if Path("/dev/input").exists() and any(Path("/dev/input").glob("event*")):
        pytest.skip("this machine has input devices; the no-gamepad message is for machines without one")
    result = subprocess.run(
        [SPOT_POLICY, "sim", "--teleop", "gamepad", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "no gamepad found" in result.stderr, result.stderr
    assert shutil.which("true")  # nothing started: no node logs
    assert not (tmp_path / "run" / "logs").exists()
