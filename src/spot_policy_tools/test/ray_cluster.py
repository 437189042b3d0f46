"""A real local Ray cluster for tests, started the way a user starts one: ``ray start --head``.

It runs as its own process group (``--block``), not inside the test process: Ray's head processes are
then forked from a fresh, single-threaded CLI rather than from a pytest process that hundreds of tests
have filled with threads, and stopping the group stops exactly this cluster. When it does not come
up, the failure shows Ray's own logs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

#: Ray's head waits this long for its GCS to start (its default, 30 s, is short for a loaded 2-core CI machine).
GCS_START_WAIT_S = 120
STARTED_LINE = "Ray runtime started."


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({exc})"


def _diagnosis(temp: Path, log: Path) -> str:
    parts = [f"--- ray start output ({log})\n{_tail(log)}"]
    for name in ("gcs_server.err", "gcs_server.out", "raylet.err", "raylet.out"):
        for found in sorted(temp.glob(f"session_*/logs/{name}")):
            parts.append(f"--- {found}\n{_tail(found)}")
    return "\n".join(parts)


@contextmanager
def ray_head(cpus: int = 2) -> Iterator[str]:
    """A running single-node Ray cluster with ``cpus`` CPUs; yields its GCS address ('host:port')."""
    temp = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's socket paths must stay under 107 characters
    log = temp / "ray_start.log"
    command = [
        str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--port", "0",
        "--num-cpus", str(cpus), "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(temp),
    ]  # fmt: skip
    env = {**os.environ, "RAY_gcs_server_port_wait_time_s": str(GCS_START_WAIT_S)}
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address_file = temp / "ray_current_cluster"
    try:
        deadline = time.monotonic() + GCS_START_WAIT_S + 30
        while STARTED_LINE not in log.read_text(errors="replace") or not address_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                state = f"exited with {proc.returncode}" if proc.poll() is not None else "timed out"
                pytest.fail(f"ray start --head {state} before the cluster was up\n{_diagnosis(temp, log)}")
            time.sleep(0.2)
        yield address_file.read_text().strip()
    finally:
        # The CLI alone gets SIGTERM: it drains the node and stops its processes in order (signalling the
        # whole group at once kills the GCS under the drain, which then waits out its 30 s). Whatever is
        # left of the group after it exits is killed.
        proc.terminate()
        try:
            proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
