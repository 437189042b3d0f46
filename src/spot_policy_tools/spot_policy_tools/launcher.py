"""Start bring-up node specs as separate processes (what ``ros2 launch`` does, for pip set-ups).

Each node writes to ``<log_dir>/<name>.log``. A process is either the node's executable (as
``ros2 run`` starts it) or, for a :class:`NodeGroup` made with ``preloaded=True``, a fork of a
server process that has imported the node's module already (:class:`ForkedNodeProcess`): the same
``main`` with the same arguments, without paying Python's and the libraries' import time per
process - what an evaluation that starts two nodes per trial, hundreds of times, needs. With
``fork_here``, the group forks its nodes from the calling process instead, which must itself be a
fresh fork of that server (an evaluation's trial process): one server for the whole evaluation.
A preloaded group also starts :class:`ComposedNodes`: several nodes as one forked process (an
evaluation trial's lock-stepped sim bridge and policy node).

Stopping sends SIGINT (a clean ROS shutdown), then SIGTERM, then SIGKILL, each after a grace
period. A node also gets SIGTERM when the process that started it dies (Linux's parent-death
signal): a job killed outright must not leave its nodes running on (a robot bridge then stands
the robot and returns the lease, as on Ctrl-C).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import importlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from spot_policy.ros.bringup import NodeSpec
from spot_policy.ros.dds_isolation import low_latency_environment


def end_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux; elsewhere nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@functools.cache
def _setpriv() -> str | None:
    return shutil.which("setpriv")  # util-linux (essential on Debian and Ubuntu): --pdeathsig since 2.33


def with_parent_death_signal(argv: list[str]) -> tuple[list[str], Callable[[], None] | None]:
    """``argv`` and a ``preexec_fn`` for :class:`subprocess.Popen` such that the child gets SIGTERM
    when its parent dies.

    A ``preexec_fn`` runs Python in a fork of a process that may run other threads (gRPC's, DDS's,
    a test's Ray client): their at-fork handlers then run in the child, and one that aborts kills the
    node before it has written a line (seen: gRPC's event engine, SIGABRT). ``setpriv --pdeathsig``
    sets the signal in the child after exec instead, so Popen can vfork; without setpriv, only a
    single-threaded process still uses ``preexec_fn``, and elsewhere the child goes without."""
    if _setpriv() is not None:
        return [_setpriv(), "--pdeathsig", "TERM", "--", *argv], None
    if sys.platform.startswith("linux") and _threads() == 1:
        return list(argv), end_with_parent
    return list(argv), None


def _threads() -> int:
    """This process's threads, native ones included (ROS, DDS and ONNX Runtime start theirs outside
    Python's view; Linux lists them all), else the ones Python knows."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def wait_past_setpriv(proc: subprocess.Popen, timeout_s: float = 2.0) -> None:
    """Until ``proc`` (started by :func:`with_parent_death_signal`'s argv) runs its own program.

    Popen returns once setpriv has been exec'd, before it has set the signal: a job killed in that
    moment would leave the node running on."""
    wrapper = os.fsencode(_setpriv() or "")
    end = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < end:
        try:
            if Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0", 1)[0] != wrapper:
                return
        except OSError:
            return
        time.sleep(0.0005)


class NodeProcess:
    def __init__(self, spec: NodeSpec, log_dir: Path, env: dict[str, str]) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self._log = open(self.log_path, "w", buffering=1)  # noqa: SIM115 - closed in stop()
        argv, preexec = with_parent_death_signal(spec.command())
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=preexec
        )
        if argv[0] == _setpriv():
            wait_past_setpriv(self.proc)

    @property
    def name(self) -> str:
        return self.spec.name

    def poll(self) -> int | None:
        return self.proc.poll()

    def send(self, sig: int) -> None:
        """``sig`` to the node's process group (its own session); nothing if it is gone already."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def _exited_within(self, timeout_s: float | None) -> bool:
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, grace_s: float = 5.0, signalled: bool = False) -> int:
        """SIGINT, SIGTERM, SIGKILL, each after ``grace_s`` (``signalled``: SIGINT was sent already)."""
        for n, sig in enumerate((signal.SIGINT, signal.SIGTERM, signal.SIGKILL)):
            if self.poll() is not None:
                break
            if not (signalled and n == 0):
                self.send(sig)
            if self._exited_within(grace_s):
                break
        self._exited_within(None)
        if self._log is not None:
            self._log.close()
        return int(self.poll())

    def tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


#: Nodes a preloaded group forks, by executable: the module whose ``main(argv)`` it runs (the
#: console_scripts entry points of setup.py; tests/test_forked_nodes.py checks they agree).
FORKABLE_MAINS = {
    "policy_node": "spot_policy.ros.policy_node",
    "sim_bridge": "spot_sim_bridge.ros.sim_bridge_node",
}


class ComposedNodes:
    """Several node specs run as one process (ROS 2 composition; :mod:`spot_policy_tools.composed_nodes`):
    what an evaluation trial starts for its lock-stepped sim bridge and policy node, whose every
    message then passes within one thread. Only a preloaded group starts it (a fork; it has no
    executable of its own); its log is ``<name>.log``, each line naming its node."""

    module = "spot_policy_tools.composed_nodes"
    executable = "composed_nodes"

    def __init__(self, specs: Sequence[NodeSpec], name: str = "nodes") -> None:
        unknown = [s.executable for s in specs if s.executable not in FORKABLE_MAINS]
        if not specs or unknown:
            raise ValueError(f"cannot compose {unknown or 'no nodes'}: only {sorted(FORKABLE_MAINS)}")
        self.specs = tuple(specs)
        self.name = name

    def command(self) -> list[str]:
        """``composed_nodes --node EXECUTABLE --ros-args ... --node ...``: each node's own ROS arguments."""
        argv = [self.executable]
        for spec in self.specs:
            argv += ["--node", spec.executable, *spec.command()[1:]]
        return argv


def main_module(spec: NodeSpec | ComposedNodes) -> str:
    """The module whose ``main`` a forked process of ``spec`` runs."""
    return spec.module if isinstance(spec, ComposedNodes) else FORKABLE_MAINS[spec.executable]


def fork_server(*also_preload: str) -> multiprocessing.context.BaseContext:
    """The forkserver context: a clean single-threaded server that imports ``also_preload`` and the
    forkable nodes' modules and does their one-off start-up work once
    (:mod:`spot_policy_tools.node_preload`, last: it freezes the heap), then forks one child per
    process asked for (multiprocessing starts it on first use, one per process; what it preloads is
    fixed then)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*also_preload, "spot_policy_tools.node_preload"])
    return context


def forks_safely_here() -> bool:
    """Whether this process may fork a node directly: a single thread (:func:`_threads`) and no ROS
    initialised."""
    rclpy = sys.modules.get("rclpy")
    return _threads() == 1 and not (rclpy is not None and rclpy.ok())


def _run_forked_node(module: str, argv: list[str], log_path: str, env: dict[str, str]) -> None:
    """In the forked child: become what the executable would be (own session, the job's environment,
    output to the log, SIGTERM when the server dies), run ``main``, end with its status."""
    os.setsid()
    end_with_parent()
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = list(argv)
    code = 1
    try:
        code = importlib.import_module(module).main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        atexit._run_exitfuncs()  # multiprocessing ends a child with os._exit: run them as exit would
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)


class ForkedNodeProcess(NodeProcess):
    """A node forked from the preloading server (:func:`fork_server`), or with ``fork_here`` from
    this process itself (which must be a fresh fork of that server: :func:`forks_safely_here`);
    NodeProcess's interface."""

    def __init__(
        self, spec: NodeSpec | ComposedNodes, log_dir: Path, env: dict[str, str], fork_here: bool = False
    ) -> None:
        if fork_here and not forks_safely_here():
            raise RuntimeError(f"cannot fork {spec.name} here: this process runs threads or ROS already")
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self._log = None
        argv = spec.command()
        context = multiprocessing.get_context("fork") if fork_here else fork_server()
        self.proc = context.Process(
            target=_run_forked_node,
            args=(main_module(spec), argv, str(self.log_path), env),
            name=spec.name,
            daemon=False,
        )
        self.proc.start()

    def poll(self) -> int | None:
        return self.proc.exitcode

    def _exited_within(self, timeout_s: float | None) -> bool:
        self.proc.join(timeout_s)
        return self.proc.exitcode is not None


class NodeGroup:
    """A set of node processes sharing one environment (ROS domain) and one log folder."""

    def __init__(
        self, log_dir: Path, env: dict[str, str] | None = None, preloaded: bool = False, fork_here: bool = False
    ) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = low_latency_environment(dict(os.environ if env is None else env))
        self.procs: list[NodeProcess] = []
        self.preloaded = preloaded
        self.fork_here = fork_here

    def start(self, spec: NodeSpec | ComposedNodes) -> NodeProcess:
        if isinstance(spec, ComposedNodes) and not self.preloaded:
            raise ValueError("composed nodes start only in a preloaded group (NodeGroup(preloaded=True))")
        if self.preloaded and spec.executable in (*FORKABLE_MAINS, ComposedNodes.executable):
            proc: NodeProcess = ForkedNodeProcess(spec, self.log_dir, self.env, fork_here=self.fork_here)
        else:
            proc = NodeProcess(spec, self.log_dir, self.env)
        self.procs.append(proc)
        return proc

    def failed(self) -> NodeProcess | None:
        """The first process that has exited, if any (a node should run until stopped)."""
        return next((p for p in self.procs if p.poll() is not None), None)

    def stop(
        self, order: Callable[[NodeProcess], int] | None = None, together: bool = False, grace_s: float = 5.0
    ) -> dict[str, int]:
        """Stop every node (``order``: sort key; default reverse start order); their exit statuses.
        ``together``: SIGINT to all at once, then wait for each (nodes that need no order).
        ``grace_s``: how long each signal has before the next (:meth:`NodeProcess.stop`).

        A node that had to be killed is named on stderr: its log ends with its threads' stacks
        (node_main.StopSignals), and a recorder's bag then needs ``spot-policy recover``."""
        procs = sorted(self.procs, key=order) if order else list(reversed(self.procs))
        codes = {}
        if together:
            for p in procs:
                if p.poll() is None:
                    p.send(signal.SIGINT)
        for p in procs:
            running = p.poll() is None
            codes[p.name] = p.stop(grace_s, signalled=together)
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
