"""Kit's lifetime in a process that also runs ROS: start ``SimulationApp`` cleanly, close it last.

Three things ``SimulationApp`` does that a ROS node must not let through (read in Isaac Sim's
``isaacsim/simulation_app/simulation_app.py``, v5.1.0 / v6.0.1 line numbers):

- it hands every command-line argument of the process to Kit (``parse_known_args()`` on
  ``sys.argv``, L439-440/L533 and L481-482/L575), so ``--ros-args ...`` or pytest's options would
  reach Kit (and ``-h`` makes it close, L537-539). Kit gets the program name only, here;
- it installs a SIGINT handler that shuts Kit down and calls ``sys.exit(0)`` (L272-282, L291-301),
  replacing rclpy's. rclpy's handler is a C-level one (it wakes executors blocked in a wait), so
  restoring the Python-level handler is not enough: the process's raw ``sigaction`` is saved
  before and put back after, through libc;
- its default ``fast_shutdown`` (L93, L115) makes ``close()`` end the process from inside Kit with
  status 0, whatever failed before (and 6.x closes that way from ``atexit`` too, L381/L411).
  Kit is started with ``fast_shutdown: False`` ("shutdown each extension", docstring L126/L168),
  so ``close()`` returns and the process keeps its own exit status; it is closed from ``atexit``,
  after everything else in the process (ROS shutdown, bag writers) has finished.

Nothing here imports ``isaacsim``: the ``SimulationApp`` class is passed in, so the argument and
signal handling is tested without Isaac Sim (with stand-in classes that check our calls only).
"""

from __future__ import annotations

import atexit
import ctypes
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from spot_sim_bridge.core.backend import BackendUnavailable

#: Larger than ``struct sigaction`` on every Linux ABI (152 bytes on x86_64 and aarch64 glibc).
_SIGACTION_BYTES = 512
#: The handlers a ROS process installs (rclpy: SIGINT and SIGTERM) and that must survive Kit's start.
GUARDED_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)

_app: Any = None
_closed = False


def launch_config(headless: bool) -> dict[str, Any]:
    """``SimulationApp``'s launch config: headless or not, and ``close()`` that returns."""
    return {"headless": bool(headless), "fast_shutdown": False}


def kit_argv(argv: Sequence[str]) -> list[str]:
    """The command line Kit sees: the program name only (ROS's and pytest's arguments are not Kit's)."""
    return [str(argv[0])] if argv else ["python"]


def _libc_sigaction() -> Callable[..., int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).sigaction
    except (OSError, AttributeError):  # not a POSIX libc: the Python-level handlers are restored only
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    function.restype = ctypes.c_int
    return function


@contextmanager
def preserved_signal_handlers(signums: Sequence[int] = GUARDED_SIGNALS) -> Iterator[None]:
    """Whatever handles ``signums`` now (Python's and the C-level ``sigaction``) handles them afterwards."""
    in_main = threading.current_thread() is threading.main_thread()
    python_level = {signum: signal.getsignal(signum) for signum in signums}
    sigaction = _libc_sigaction()
    raw: dict[int, ctypes.Array[ctypes.c_char]] = {}
    if sigaction is not None:
        for signum in signums:
            saved = ctypes.create_string_buffer(_SIGACTION_BYTES)
            if sigaction(int(signum), None, saved) == 0:
                raw[int(signum)] = saved
    try:
        yield
    finally:
        for signum in signums:
            handler = python_level[signum]
            if in_main and handler is not None and signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)  # Python's table (this also resets the C level ...)
            if sigaction is not None and int(signum) in raw:
                sigaction(int(signum), raw[int(signum)], None)  # ... so the saved C level goes back last


@contextmanager
def kit_start_guard() -> Iterator[None]:
    """While Kit starts: ``sys.argv`` is the program name only and the signal handlers are kept."""
    saved_argv = list(sys.argv)
    sys.argv = kit_argv(saved_argv)
    try:
        with preserved_signal_handlers():
            yield
    finally:
        sys.argv = saved_argv


def start_simulation_app(simulation_app: Callable[[dict[str, Any]], Any], headless: bool) -> Any:
    """The process's one ``SimulationApp`` (started on the first call), closed at interpreter exit.

    ``simulation_app``: Isaac Sim's ``SimulationApp`` class. A start that fails inside Kit
    (``SimulationApp`` calls ``sys.exit(1)`` when Kit does not come up, v6.0.1 L580-582; the EULA
    prompt exits on a closed stdin) becomes :class:`BackendUnavailable` with what to check.
    """
    global _app
    if _app is not None:
        return _app
    if _closed:
        raise BackendUnavailable(
            "Isaac Sim's Kit was already shut down in this process and cannot start twice; run the backend "
            "in a new process"
        )
    with kit_start_guard():
        try:
            app = simulation_app(launch_config(headless))
        except SystemExit as exc:
            raise BackendUnavailable(
                f"Isaac Sim did not start (SimulationApp exited with status {exc.code}; its log above says why); "
                "if it asked for the EULA: export OMNI_KIT_ACCEPT_EULA=YES after reading it; then run "
                "'spot-policy doctor --backend isaac'"
            ) from None
    _app = app
    atexit.register(close_simulation_app)
    return app


def close_simulation_app() -> None:
    """Shut Kit down (``close()``, which returns under ``fast_shutdown: False``); later calls do nothing."""
    global _app, _closed
    if _app is None:
        return
    app, _app = _app, None
    _closed = True
    app.close()


def running_app() -> Any:
    """The running ``SimulationApp``, or None."""
    return _app
