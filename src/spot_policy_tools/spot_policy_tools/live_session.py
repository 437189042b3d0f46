"""Seeing and driving Spot by hand from the jobs: ``--foxglove`` and ``--teleop keyboard|gamepad``.

``--foxglove`` adds the live view (``spot_policy.ros.live_view_node``) to a run; ``--teleop`` (or
``--foxglove`` without ``--profile``) makes the sim job a session driven by hand instead of by a
profile: the bridge, the policy node and the recorder run until you quit, with the keyboard
teleop in this terminal, or a gamepad read from evdev into the teleop node, or Foxglove's Teleop
panel. The run folder keeps the bag (and the video).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from spot_policy.ros import bringup
from spot_policy_tools.launcher import NodeGroup

TELEOPS = ("keyboard", "gamepad")


def add_view_arguments(parser: argparse.ArgumentParser, teleop: bool = True) -> None:
    parser.add_argument(
        "--foxglove",
        action="store_true",
        help="serve a live view for Foxglove (robot, frames, velocities, joints, diagnostics) over WebSocket",
    )
    parser.add_argument("--foxglove-port", type=int, default=8765, help="live view port (default 8765)")
    parser.add_argument(
        "--foxglove-host", default="127.0.0.1", help="live view address (default 127.0.0.1: this machine only)"
    )
    if not teleop:
        return
    parser.add_argument(
        "--teleop",
        choices=TELEOPS,
        default=None,
        help="drive Spot by hand until you quit: keyboard (this terminal) or gamepad (Linux evdev, PS4/Xbox)",
    )
    parser.add_argument("--gamepad-device", default="", help="gamepad: /dev/input/eventN (default: the first pad)")
    parser.add_argument(
        "--gamepad-layout", default="", choices=("", "ps4", "xbox"), help="gamepad: button layout (default: by name)"
    )


def view_specs(args: argparse.Namespace, accept_cmd_vel: bool) -> list[bringup.NodeSpec]:
    """The live view node, where ``--foxglove`` asks for it."""
    if not args.foxglove:
        return []
    port = args.foxglove_port or "<any free port: see logs/live_view.log>"
    print(f"live view: open ws://{args.foxglove_host}:{port} in Foxglove (Open connection -> Foxglove WebSocket), "
          "layout config/foxglove/spot.json" + ("" if accept_cmd_vel else " (view only)"), flush=True)  # fmt: skip
    return [bringup.live_view(args.foxglove_port, args.foxglove_host, accept_cmd_vel=accept_cmd_vel)]


def is_interactive(args: argparse.Namespace) -> bool:
    """Driven by hand: ``--teleop``, or ``--foxglove`` with no ``--profile``."""
    return getattr(args, "teleop", None) is not None or (args.foxglove and args.profile is None)


def teleop_specs(args: argparse.Namespace, lockstep: bool) -> list[bringup.NodeSpec]:
    """Gamepad: the evdev reader and the teleop node with the pad's mapping (raises GamepadMissing)."""
    if args.teleop != "gamepad":
        return []
    from spot_policy.ros.gamepad_node import find_gamepad

    pad = find_gamepad(args.gamepad_device, args.gamepad_layout)
    print(f"gamepad: {pad.name} ({pad.path}), {pad.layout} mapping: hold the dead-man button to move")
    # In lockstep, sim time runs several times faster than the wall clock: commands go out more often.
    teleop = bringup.teleop_node(sim_time=True)
    rate = 100.0 if lockstep else 50.0
    teleop = replace(teleop, overrides={**teleop.overrides, "mapping": pad.layout, "publish_rate_hz": rate})
    return [bringup.gamepad(pad.path, pad.layout), teleop]


def run_sim_session(args: argparse.Namespace, specs: list[bringup.NodeSpec], out: Path, lockstep: bool) -> int:
    """The sim job driven by hand: checks what the chosen teleop needs (one line if it is missing)."""
    from spot_policy.ros.gamepad_node import GamepadMissing

    if args.teleop == "keyboard" and (why := check_tty()) is not None:
        print(f"spot-policy sim: error: {why}; fix: run it in a terminal, or use --teleop gamepad / --foxglove",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        specs = specs + teleop_specs(args, lockstep)
    except (GamepadMissing, ValueError) as exc:
        print(f"spot-policy sim: {exc}", file=sys.stderr)
        return 1
    return run_interactive(specs, out, args, lockstep)


def run_interactive(specs: list[bringup.NodeSpec], out: Path, args: argparse.Namespace, lockstep: bool) -> int:
    """Start ``specs``, let the user drive until they quit (or a node fails), stop everything."""
    group = NodeGroup(out / "logs")
    code = 0
    try:
        for spec in specs:
            group.start(spec)
        if args.foxglove:
            print("Foxglove: the stand / walk / stop buttons call the policy node; the Teleop panel drives /cmd_vel",
                  flush=True)  # fmt: skip
        if args.teleop == "keyboard":
            code = _keyboard(group, lockstep)
        else:
            how = "the gamepad" if args.teleop == "gamepad" else "Foxglove's Teleop panel"
            print(f"driving with {how}; Ctrl-C ends the session", flush=True)
            while (failed := group.failed()) is None:
                time.sleep(0.2)
            print(f"spot-policy: {failed.name} exited with {failed.poll()}:\n{failed.tail(12)}", file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        print("\nending the session", flush=True)
    finally:
        group.stop(order=lambda p: 0 if p.name == "recorder" else 1)
    if not args.no_video:
        try:
            from spot_policy_tools.replay_video import render_video

            render_video(out / "bag", out / "video.mp4")
        except Exception as exc:  # a missing GL library must not lose the recording
            print(f"video: not rendered ({type(exc).__name__}: {exc})", file=sys.stderr)
    print(f"run folder: {out} (bag/, logs/{'' if args.no_video else ', video.mp4'})")
    return code


def _keyboard(group: NodeGroup, lockstep: bool) -> int:
    """The keyboard teleop in the foreground (it needs this terminal); the nodes in the background."""
    spec = bringup.keyboard_teleop(publish_rate_hz=100.0 if lockstep else 20.0)
    proc = subprocess.Popen(spec.command(), env=group.env)
    try:
        while proc.poll() is None:
            failed = group.failed()
            if failed is not None:
                proc.send_signal(signal.SIGTERM)  # it restores the terminal on the way out
                proc.wait(timeout=5)
                print(f"\nspot-policy: {failed.name} exited with {failed.poll()}:\n{failed.tail(12)}", file=sys.stderr)
                return 1
            time.sleep(0.1)
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
    return 0 if proc.returncode in (0, -signal.SIGTERM) else proc.returncode


def check_tty() -> str | None:
    """Why the keyboard teleop cannot run here, or None."""
    return None if os.isatty(sys.stdin.fileno()) else "--teleop keyboard needs a terminal (stdin is not a TTY)"
