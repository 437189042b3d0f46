"""Small pieces every node of the suite shares, so each node reads the same way."""

from __future__ import annotations

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.impl.rcutils_logger import RcutilsLogger


def read_only(description: str) -> ParameterDescriptor:
    """A parameter fixed at start-up (changing it at run time would need a restart)."""
    return ParameterDescriptor(description=description, read_only=True)


def log_event(logger: RcutilsLogger, level: str, message: str) -> None:
    """A core's message at its level ("error", "warn", else info)."""
    # rclpy binds one severity to each call site, hence three calls.
    if level == "error":
        logger.error(message)
    elif level == "warn":
        logger.warning(message)
    else:
        logger.info(message)
