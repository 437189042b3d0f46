"""The connection to the Ray cluster that ``evaluate --ray ADDRESS`` names.

Ray's own failures here are slow and long: a dead address is retried for minutes, and a cluster that
wants a token (Ray turns token authentication on for the clusters it starts since 2.5x; a driver given
an explicit address never sends the local token unless told to) ends in a 20 s wait and three chained
tracebacks. This module checks the address first and turns what Ray raises into one line with the fix.
It leaves Ray as it found it: a connection it opened is closed after the trials.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

PROBE_TIMEOUT_S = 5.0
START_HINT = "start one with 'ray start --head' and pass the address it prints (or --ray auto on that machine)"
AUTH_HINT = (
    "export RAY_AUTH_MODE=token, with the cluster's token in ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or "
    "RAY_AUTH_TOKEN (Ray sends it to an explicitly given address only when told to)"
)


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) for a plain 'host:port' GCS address; None for 'auto', 'ray://...' and the like."""
    if "://" in address or address.count(":") != 1:
        return None
    host, _, port = address.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


def check_reachable(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise RuntimeError (with the fix) unless something accepts TCP connections at ``address``."""
    target = host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise RuntimeError(f"--ray {address}: no Ray cluster answers there ({reason}); fix: {START_HINT}") from None


def explain(address: str, exc: BaseException) -> str:
    """One line for a failed ``ray.init``: what went wrong and the fix, whatever Ray chained together."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    text = "\n".join(chain)
    if "InvalidAuthToken" in text or "AuthenticationError" in text:
        mode = os.environ.get("RAY_AUTH_MODE", "unset")
        refused = f"the cluster refused this client's authentication (RAY_AUTH_MODE is {mode})"
        return f"--ray {address}: {refused}; fix: {AUTH_HINT}"
    if "Could not find any running Ray instance" in text:
        return f"--ray {address}: no running Ray cluster found on this machine; fix: {START_HINT}"
    first = chain[0].splitlines()[0] if chain else "unknown error"
    return f"--ray {address}: cannot connect ({first}); fix: check the address and that the cluster runs Ray 2.60.0"


@contextmanager
def connected(address: str) -> Iterator[ModuleType]:
    """The ``ray`` module, connected to ``address`` (unless this process already is), for the block's length."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("--ray needs Ray: pip install 'ray==2.60.0' (the optional extra 'ray')") from None
    opened = not ray.is_initialized()
    if opened:
        check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=False)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError or its own AuthenticationError
            raise RuntimeError(explain(address, exc)) from None
    try:
        yield ray
    finally:
        if opened:
            ray.shutdown()
