"""Start bring-up node specs as separate processes (what ``ros2 launch`` does, for pip set-ups).

Each node writes to ``<log_dir>/<name>.log``. Stopping sends SIGINT (a clean ROS shutdown),
then SIGTERM, then SIGKILL, each after a grace period. A node also gets SIGTERM when the process
that started it dies (Linux's parent-death signal): a job killed outright must not leave its
nodes running on (a robot bridge then stands the robot and returns the lease, as on Ctrl-C).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from spot_policy.ros.bringup import NodeSpec
from spot_policy.ros.dds_isolation import low_latency_environment


def _end_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux; elsewhere nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class NodeProcess:
    def __init__(self, spec: NodeSpec, log_dir: Path, env: dict[str, str]) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self._log = open(self.log_path, "w", buffering=1)  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            spec.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_end_with_parent,  # the job may run threads: prctl only, async-signal-safe enough
        )

    @property
    def name(self) -> str:
        return self.spec.name

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self, grace_s: float = 5.0) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                continue
        code = self.proc.wait()
        self._log.close()
        return code

    def tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class NodeGroup:
    """A set of node processes sharing one environment (ROS domain) and one log folder."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = low_latency_environment(dict(os.environ if env is None else env))
        self.procs: list[NodeProcess] = []

    def start(self, spec: NodeSpec) -> NodeProcess:
        proc = NodeProcess(spec, self.log_dir, self.env)
        self.procs.append(proc)
        return proc

    def failed(self) -> NodeProcess | None:
        """The first process that has exited, if any (a node should run until stopped)."""
        return next((p for p in self.procs if p.poll() is not None), None)

    def stop(self, order: Callable[[NodeProcess], int] | None = None) -> dict[str, int]:
        """Stop every node (``order``: sort key; default reverse start order); their exit statuses.

        A node that had to be killed is named on stderr: its log ends with its threads' stacks
        (node_main.StopSignals), and a recorder's bag then needs ``spot-policy recover``."""
        procs = sorted(self.procs, key=order) if order else list(reversed(self.procs))
        codes = {}
        for p in procs:
            running = p.poll() is None
            codes[p.name] = p.stop()
            if running and codes[p.name] == -signal.SIGKILL:
                print(f"{p.name} did not stop on SIGINT and SIGTERM and was killed: see {p.log_path}",
                      file=sys.stderr)  # fmt: skip
        return codes


def follow(path: Path, position: int) -> tuple[list[str], int]:
    """New complete lines of a growing log file since ``position``."""
    try:
        with open(path, errors="replace") as f:
            f.seek(position)
            text = f.read()
    except OSError:
        return [], position
    cut = text.rfind("\n") + 1
    return text[:cut].splitlines(), position + len(text[:cut].encode())


def wait_for(predicate: Callable[[], bool], timeout: float, poll: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll)
    return predicate()
