"""Keep Python's garbage collector out of the control loop.

A full (generation 2) collection walks every object the process holds: after start-up that is the
whole of rclpy, ONNX Runtime's bindings, bosdyn's protobufs and MuJoCo's model, and on this machine
it stopped the emulator for ~100 ms and the robot bridge for ~45 ms in the middle of a run, enough
to trip the 50 ms link-latency check and the policy's 60 ms input watchdog. Freezing the start-up
heap (:func:`gc.freeze`) leaves later collections only the objects made while running.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect once, then exempt everything alive now from future collections. Call when a
    process has finished starting up (nodes built, connections made), before its loop runs."""
    gc.collect()
    gc.freeze()
