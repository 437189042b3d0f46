"""Failures of the robot link as one line each (cause; fix), and the credentials that must never leak.

Every way the bridge can fail ends in a :class:`BridgeError` whose text names what happened and
what to do about it, so an operator at the robot reads one log line, not a stack trace. The
texts never contain the credentials: they are read from the environment into a
:class:`Credentials` whose ``repr`` hides them, and every outgoing text goes through
:func:`Redactor.redact`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

ENV_USERNAME = "BOSDYN_CLIENT_USERNAME"
ENV_PASSWORD = "BOSDYN_CLIENT_PASSWORD"
ENV_HOSTNAME = "SPOT_IP"


class BridgeError(RuntimeError):
    """A failure with its cause and its fix; ``fatal``: the bridge cannot continue (exit non-zero)."""

    def __init__(self, cause: str, fix: str, fatal: bool = True, kind: str = "error") -> None:
        super().__init__(f"{cause}; fix: {fix}")
        self.cause, self.fix, self.fatal, self.kind = cause, fix, fatal, kind


@dataclass(frozen=True)
class Credentials:
    """Robot user credentials. ``repr``/``str`` never show them."""

    username: str = field(repr=False)
    password: str = field(repr=False)

    def __str__(self) -> str:
        return "Credentials(<hidden>)"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Credentials:
        """From ``BOSDYN_CLIENT_USERNAME`` / ``BOSDYN_CLIENT_PASSWORD``; ``BridgeError`` names the missing ones."""
        env = os.environ if env is None else env
        username, password = env.get(ENV_USERNAME, ""), env.get(ENV_PASSWORD, "")
        missing = [name for name, value in ((ENV_USERNAME, username), (ENV_PASSWORD, password)) if not value]
        if missing:
            raise BridgeError(
                f"robot credentials missing: {' and '.join(missing)} not set",
                f"export {ENV_USERNAME} and {ENV_PASSWORD} (a robot user's login) in the bridge's environment "
                "(a systemd unit: EnvironmentFile=, see docs/JETSON.md); they are never parameters",
                kind="credentials",
            )
        return cls(username, password)


class Redactor(logging.Filter):
    """Replaces the secrets in any text (and in log records passing through it, as a logging filter)."""

    MASK = "<redacted>"

    def __init__(self, *secrets: str) -> None:
        super().__init__()
        # Longest first, so a secret containing another is masked whole. Very short strings
        # (a one-letter user name) would mask ordinary words, so they are left alone.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, self.MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            clean = self.redact(message)
            if clean != message:
                record.msg, record.args = clean, None
        return True


def install_log_redaction(redactor: Redactor, sdk_logger: str = "") -> None:
    """Keep the secrets out of what bosdyn-client and gRPC log through Python logging.

    bosdyn-client logs whole requests at DEBUG level on the SDK's logger (named after the client)
    and its children, and an auth request holds the password: those loggers are held at INFO, so
    such records are never made. The redactor also filters every handler present now.
    """
    for name in ("bosdyn", sdk_logger):
        if name:
            logger = logging.getLogger(name)
            logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))
            if redactor not in logger.filters:
                logger.addFilter(redactor)
    for name in ("", "bosdyn", "grpc", sdk_logger):
        for handler in logging.getLogger(name).handlers:
            if redactor not in handler.filters:
                handler.addFilter(redactor)


def describe(exc: BaseException) -> str:
    """A short, credential-free description of an SDK exception: its class and its message, one line."""
    name = type(exc).__name__
    message = getattr(exc, "error_message", None)
    if message is None:
        message = str(exc)
    message = " ".join(str(message).split())
    if len(message) > 160:
        message = message[:157] + "..."
    return f"{name}: {message}" if message else name


def explain(exc: BaseException, stage: str, host: str, port: int) -> BridgeError:
    """The :class:`BridgeError` for an exception raised at start-up ``stage`` (auth, time_sync, ...)."""
    from bosdyn.client import exceptions as bx
    from bosdyn.client.auth import InvalidLoginError, InvalidTokenError
    from bosdyn.client.lease import ResourceAlreadyClaimedError
    from bosdyn.client.power import EstoppedError, FaultedError
    from bosdyn.client.time_sync import InactiveThreadError, TimeSyncError

    where = f"{host}:{port}"
    if isinstance(exc, BridgeError):
        return exc
    if isinstance(exc, (InvalidLoginError, InvalidTokenError)):
        return BridgeError(
            f"authentication failed: the robot at {where} rejected the login from {ENV_USERNAME}/{ENV_PASSWORD}",
            "set both to a user of this robot (its admin web page lists users; a changed password must be updated)",
            kind="auth",
        )
    if isinstance(exc, (bx.InvalidClientCertificateError, bx.NonexistentAuthorityError)):
        return BridgeError(
            f"TLS handshake with {where} failed ({type(exc).__name__}): the robot's certificate does not match "
            "the ca_cert parameter",
            "leave ca_cert empty for a real Spot (the SDK's Boston Dynamics CA) or point it at the emulator's ca.pem",
            kind="tls",
        )
    if isinstance(exc, (bx.UnableToConnectToRobotError, bx.ProxyConnectionError, bx.UnknownDnsNameError)) or (
        isinstance(exc, (bx.TimedOutError, bx.TransientFailureError, bx.ConnectionResetError)) and stage == "auth"
    ):
        return BridgeError(
            f"robot unreachable at {where} ({type(exc).__name__})",
            "check the cable/Wi-Fi and the address (parameter hostname or $SPOT_IP; payload port: 192.168.50.3), "
            f"then `ping {host}`",
            kind="unreachable",
        )
    if isinstance(exc, (TimeSyncError, InactiveThreadError)) or stage == "time_sync":
        return BridgeError(
            f"time sync with the robot at {where} failed ({type(exc).__name__})",
            "check the link latency (a wired link to the payload port) and that the robot's time-sync service runs; "
            "commands carry robot-clock end times and cannot be sent without it",
            kind="time_sync",
        )
    if isinstance(exc, ResourceAlreadyClaimedError):
        owner = ""
        response = getattr(exc, "response", None)
        if response is not None and response.HasField("lease_owner"):
            owner = f" ({response.lease_owner.client_name or response.lease_owner.user_name})"
        return BridgeError(
            f"lease held by another client{owner}: the robot's body lease is taken",
            "release control on the tablet (or stop the other client), then restart the bridge; "
            "it never takes a lease by force",
            kind="lease",
        )
    if isinstance(exc, EstoppedError):
        return BridgeError(
            "the robot is E-Stopped: motor power refused",
            "release the E-Stop (tablet or E-Stop client) or set own_estop: true to run an E-Stop endpoint",
            kind="estop",
        )
    if isinstance(exc, FaultedError):
        return BridgeError(
            "the robot reports a system fault: motor power refused",
            "clear the fault on the tablet / admin page (check the battery and the motors), then restart",
            kind="fault",
        )
    if isinstance(exc, bx.UnauthenticatedError):
        return BridgeError(
            f"the robot at {where} refused the session token ({stage})",
            "restart the bridge to log in again; check the robot's user accounts",
            kind="auth",
        )
    return BridgeError(
        f"{stage} failed: {describe(exc)}",
        "see the robot's tablet or admin page for its state, then restart the bridge",
        kind=stage,
    )
