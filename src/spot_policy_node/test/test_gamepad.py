"""Gamepad events -> joy_node's layout -> the teleop mapping's command, from event streams.

``gamepad/*.evtest`` are event streams in ``evtest``'s output format (how a pad is recorded on
Linux: ``evtest /dev/input/eventN > pad.log``), written with the event codes and axis ranges the
kernel's ``hid-playstation`` (DualShock 4) and ``xpad`` (Xbox One) drivers report; there is no pad
on this machine to record. A user's own recording replays through the same parser.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spot_policy.core.gamepad import LAYOUTS, JoyState, layout_for, parse_evtest, replay
from spot_policy.core.paths import config_dir
from spot_policy.core.teleop import Teleop, load_mapping

HERE = Path(__file__).resolve().parent / "gamepad"


def play(recording: str, mapping: str) -> tuple[list, Teleop, list[str], list]:
    rec = parse_evtest((HERE / recording).read_text())
    layout = layout_for(rec.name)
    assert layout == mapping
    frames = replay(JoyState(LAYOUTS[layout], rec.ranges), rec.events)
    teleop = Teleop(load_mapping(mapping, config_dir() / "teleop"))
    commands, actions = [], []
    for i, (axes, buttons) in enumerate(frames):
        teleop.update(axes, buttons, float(i))
        commands.append(teleop.command(float(i)))
        actions += teleop.take_actions()
    return frames, teleop, actions, commands


def test_ps4_recording_drives_through_the_ps4_mapping() -> None:
    frames, _, actions, commands = play("ps4_walk.evtest", "ps4")
    axes = [a for a, _ in frames]
    assert len(frames) == 13  # one Joy per report that changed something
    assert frames[0][1][4] == 1 and frames[0][0][2] == 1.0  # L1 pressed; L2 at rest reads +1
    assert axes[1][1] == 1.0  # left stick up: +1, as joy_node reports it
    assert commands[1] == (1.0, 0.0, 0.0)  # vx at full scale while L1 is held
    assert axes[2][3] == 1.0 and commands[2] == (1.0, 0.0, 1.0)  # right stick left: turn left
    assert actions == ["stand", "walk", "stop"]  # triangle, cross, circle; each once per press
    assert axes[7][2] == -1.0 and frames[7][1][6] == 1  # L2 pulled: axis -1 and button 6
    assert axes[8][7] == 1.0  # d-pad up
    assert axes[9][1] == pytest.approx(0.0, abs=0.01) and axes[9][2] == 1.0 and axes[9][7] == 0.0
    assert commands[9] == (0.0, 0.0, 0.0)  # back at rest: within the deadband
    assert commands[10] == (0.0, 0.0, 0.0) and frames[10][1][4] == 0  # dead-man released


def test_xbox_recording_drives_through_the_xbox_mapping() -> None:
    frames, _, actions, commands = play("xbox_walk.evtest", "xbox")
    axes = [a for a, _ in frames]
    assert axes[1][1] == 1.0 and axes[1][0] == pytest.approx(0.5, abs=1e-3)  # up, half left
    assert commands[1] == pytest.approx((1.0, 0.5 * (0.5 - 0.1) / 0.9, 0.0), abs=1e-3)  # deadband rescaled
    assert axes[2][3] == -1.0 and commands[2][2] == pytest.approx(-1.0)  # right stick right: turn right
    assert axes[3][1] == 0.0  # inside the driver's flat zone: exactly centred
    assert actions == ["stand", "walk"]  # Y (BTN_Y, reported as BTN_WEST), A
    assert axes[8][5] == -1.0  # RT pressed
    assert len(frames[0][1]) == 11 and len(axes[0]) == 8  # joy_node's Xbox layout


def test_device_names_pick_the_layout() -> None:
    assert layout_for("Microsoft X-Box 360 pad") == "xbox"
    assert layout_for("Xbox Wireless Controller") == "xbox"
    assert layout_for("Sony Interactive Entertainment Wireless Controller") == "ps4"
    assert layout_for("DualSense Wireless Controller") == "ps4"


def test_out_of_range_and_unknown_events_are_harmless() -> None:
    rec = parse_evtest((HERE / "ps4_walk.evtest").read_text())
    state = JoyState(LAYOUTS["ps4"], rec.ranges)
    assert state.apply(3, 1, -5000) and state.axes[1] == 1.0  # clipped to [-1, 1]
    assert state.apply(3, 1, 9000) and state.axes[1] == -1.0
    assert not state.apply(3, 0x28, 7)  # ABS_MISC: not part of the layout
    assert not state.apply(4, 4, 123)  # EV_MSC scan code
    assert not state.apply(1, 0x14A, 1)  # BTN_TOUCH (touchpad)
    assert state.apply(1, 0x130, 2) is True and state.buttons[0] == 1  # autorepeat value 2 = held


def test_no_gamepad_is_one_line() -> None:
    from spot_policy.ros.gamepad_node import GamepadMissing, find_gamepad

    with pytest.raises(GamepadMissing) as missing:
        find_gamepad()  # this machine has no /dev/input at all
    assert "\n" not in str(missing.value) and "fix:" in str(missing.value)
    with pytest.raises(GamepadMissing, match="cannot open /dev/input/event99"):
        find_gamepad("/dev/input/event99")
