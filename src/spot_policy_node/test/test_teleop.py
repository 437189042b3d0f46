"""Teleop core without ROS: mapping YAML, deadband, scale/inversion, dead-man, joy timeout, edges."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from spot_policy.core.paths import config_dir
from spot_policy.core.teleop import (
    AxisMapping,
    JoyMapping,
    JoyMessageError,
    MappingError,
    Teleop,
    apply_deadband,
    available_mappings,
    load_mapping,
    resolve_mapping,
)

TELEOP_DIR = config_dir() / "teleop"


def doc(**overrides: Any) -> dict[str, Any]:
    """A valid mapping document: vx axis 1, vy axis 0, wz axis 3 (inverted), dead-man 4."""
    base: dict[str, Any] = {
        "axes": {
            "vx": {"index": 1, "scale": 1.0},
            "vy": {"index": 0, "scale": 0.5},
            "wz": {"index": 3, "scale": 2.0, "invert": True},
        },
        "deadband": 0.2,
        "deadman": 4,
        "buttons": {"stand": 2, "walk": 0, "stop": 1},
        "joy_timeout": 0.5,
    }
    base.update(overrides)
    return base


def joy(
    lx: float = 0.0, ly: float = 0.0, rx: float = 0.0, *, deadman: bool = True, pressed: tuple[int, ...] = ()
) -> tuple[list[float], list[int]]:
    """Axes and buttons of an 8-axis, 13-button pad (the DS4 layout)."""
    axes = [lx, ly, 1.0, rx, 0.0, 1.0, 0.0, 0.0]
    buttons = [0] * 13
    buttons[4] = int(deadman)
    for index in pressed:
        buttons[index] = 1
    return axes, buttons


def teleop(**overrides: Any) -> Teleop:
    return Teleop(JoyMapping.from_dict(doc(**overrides), source="test"))


# --- mapping -----------------------------------------------------------------------------------


def test_mapping_from_dict() -> None:
    m = JoyMapping.from_dict(doc())
    assert m.vx == AxisMapping(index=1, scale=1.0, invert=False)
    assert m.wz == AxisMapping(index=3, scale=2.0, invert=True)
    assert (m.deadman, m.buttons) == (4, {"stand": 2, "walk": 0, "stop": 1})
    assert (m.deadband, m.joy_timeout) == (0.2, 0.5)


def test_mapping_defaults() -> None:
    d = doc(axes={"vx": {"index": 1}, "vy": {"index": 0}, "wz": {"index": 3}})
    del d["deadband"], d["joy_timeout"]
    m = JoyMapping.from_dict(d)
    assert (m.vx.scale, m.vy.scale, m.wz.scale) == (1.0, 0.5, 1.0)
    assert not (m.vx.invert or m.vy.invert or m.wz.invert)
    assert m.joy_timeout == 0.5
    assert 0.0 < m.deadband < 0.3


@pytest.mark.parametrize("name", ["ps4", "xbox"])
def test_shipped_mappings_load(name: str) -> None:
    assert name in available_mappings(TELEOP_DIR)
    m = load_mapping(name, TELEOP_DIR)
    assert m.name == name
    # Left stick vertical -> vx, left stick horizontal -> vy, right stick horizontal -> wz, and
    # joy_node's "up/left is positive" already matches REP-103: no inversion.
    assert (m.vx.index, m.vy.index, m.wz.index) == (1, 0, 3)
    assert (m.vx.scale, m.vy.scale, m.wz.scale) == (1.0, 0.5, 1.0)
    assert not (m.vx.invert or m.vy.invert or m.wz.invert)
    assert m.deadman == 4  # L1 / LB
    assert m.joy_timeout == 0.5


def test_shipped_button_choices() -> None:
    ps4, xbox = load_mapping("ps4", TELEOP_DIR), load_mapping("xbox", TELEOP_DIR)
    assert ps4.buttons == {"stand": 2, "walk": 0, "stop": 1}  # triangle, cross, circle
    assert xbox.buttons == {"stand": 3, "walk": 0, "stop": 1}  # Y, A, B


def test_node_parameter_file_names_a_shipped_mapping() -> None:
    params = yaml.safe_load((config_dir() / "teleop.yaml").read_text())["teleop"]["ros__parameters"]
    assert params["mapping"] in available_mappings(TELEOP_DIR)
    assert params["publish_rate_hz"] == 50.0
    assert params["policy_node"] == "policy_node"


def test_resolve_by_name_and_by_path(tmp_path: Path) -> None:
    assert resolve_mapping("ps4", TELEOP_DIR) == TELEOP_DIR / "ps4.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text(yaml.safe_dump(doc()))
    assert resolve_mapping(str(own), TELEOP_DIR) == own
    assert load_mapping(str(own), TELEOP_DIR).name == "mine"


def test_unknown_mapping_name_lists_available() -> None:
    with pytest.raises(MappingError, match=r"'ps5' not found.*available in .*: ps4, xbox"):
        resolve_mapping("ps5", TELEOP_DIR)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"deadmen": 4}, r"unknown key 'deadmen' \(valid: name, axes, deadband, deadman, buttons, joy_timeout\)"),
        (
            {"axes": {"vx": {"idx": 1}, "vy": {"index": 0}, "wz": {"index": 3}}},
            r"unknown key 'axes\.vx\.idx' \(valid: index, scale, invert\)",
        ),
        (
            {"axes": {"vx": {"index": 1}, "vy": {"index": 0}, "wz": {"index": 3}, "vz": {"index": 2}}},
            r"unknown key 'axes\.vz' \(valid: vx, vy, wz\)",
        ),
        ({"buttons": {"stand": 2, "walk": 0, "stop": 1, "sit": 3}}, r"unknown key 'buttons\.sit'"),
        ({"buttons": {"stand": 2, "walk": 0}}, r"missing key 'buttons\.stop'"),
        ({"axes": {"vx": {"index": 1}, "vy": {"index": 0}}}, r"missing key 'axes\.wz'"),
        ({"axes": {"vx": {"index": -1}, "vy": {"index": 0}, "wz": {"index": 3}}}, r"axes\.vx\.index must be"),
        ({"axes": {"vx": {"index": 1.0}, "vy": {"index": 0}, "wz": {"index": 3}}}, r"axes\.vx\.index must be"),
        ({"axes": {"vx": {"index": 1}, "vy": {"index": 1}, "wz": {"index": 3}}}, r"vx and axes\.vy both use axis 1"),
        (
            {"axes": {"vx": {"index": 1, "scale": "fast"}, "vy": {"index": 0}, "wz": {"index": 3}}},
            r"axes\.vx\.scale must be a finite number",
        ),
        (
            {"axes": {"vx": {"index": 1, "invert": "yes"}, "vy": {"index": 0}, "wz": {"index": 3}}},
            r"axes\.vx\.invert must be true or false",
        ),
        ({"deadband": 1.0}, r"deadband must be a number in \[0, 1\)"),
        ({"joy_timeout": 0}, r"joy_timeout must be a finite number > 0"),
        ({"deadman": True}, r"deadman must be a non-negative integer"),
        ({"buttons": {"stand": 4, "walk": 0, "stop": 1}}, r"buttons\.stand uses button 4, already used by deadman"),
        ({"buttons": [2, 0, 1]}, r"buttons must be a mapping"),
    ],
)
def test_bad_mapping_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=message) as info:
        JoyMapping.from_dict(doc(**overrides), source="pad.yaml")
    text = str(info.value)
    assert text.startswith("pad.yaml: ") and "\n" not in text


def test_missing_top_level_key_and_bad_document() -> None:
    d = doc()
    del d["deadman"]
    with pytest.raises(MappingError, match=r"^m: missing key 'deadman'$"):
        JoyMapping.from_dict(d, source="m")
    with pytest.raises(MappingError, match=r"the document must be a mapping, got list"):
        JoyMapping.from_dict([1, 2], source="m")


def test_bad_yaml_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("axes: [1, 2\n")
    with pytest.raises(MappingError, match=r"bad\.yaml: not valid YAML") as info:
        JoyMapping.from_yaml(bad)
    assert "\n" not in str(info.value)
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(doc(joy_timout=0.5)))
    with pytest.raises(MappingError, match=r"typo\.yaml: unknown key 'joy_timout'"):
        JoyMapping.from_yaml(typo)


# --- deadband, scale, inversion -----------------------------------------------------------------


def test_deadband_is_continuous_and_reaches_full_scale() -> None:
    d = 0.2
    assert apply_deadband(0.0, d) == 0.0
    assert apply_deadband(d, d) == 0.0
    assert apply_deadband(-d, d) == 0.0
    eps = 1e-9
    assert apply_deadband(d + eps, d) == pytest.approx(0.0, abs=1e-8)  # no step at the edge
    assert apply_deadband(-(d + eps), d) == pytest.approx(0.0, abs=1e-8)
    assert apply_deadband(1.0, d) == 1.0
    assert apply_deadband(-1.0, d) == -1.0
    assert apply_deadband(0.6, d) == pytest.approx(0.5)  # linear in between
    assert apply_deadband(1.5, d) == 1.0  # clipped
    # Monotonic over the whole range.
    xs = [i / 1000 - 1.0 for i in range(2001)]
    ys = [apply_deadband(x, d) for x in xs]
    assert all(b >= a for a, b in itertools.pairwise(ys))


def test_zero_deadband_is_identity() -> None:
    assert apply_deadband(0.37, 0.0) == pytest.approx(0.37)


def test_per_axis_scale_and_inversion() -> None:
    t = teleop()
    t.update(*joy(lx=1.0, ly=1.0, rx=1.0), now=0.0)
    assert t.command(0.0) == pytest.approx((1.0, 0.5, -2.0))  # wz inverted, scale 2
    t.update(*joy(lx=-0.6, ly=-0.6, rx=-0.6), now=0.1)
    vx, vy, wz = t.command(0.1)
    assert vx == pytest.approx(-0.5)
    assert vy == pytest.approx(-0.25)
    assert wz == pytest.approx(1.0)


def test_inside_deadband_is_exact_zero() -> None:
    t = teleop()
    t.update(*joy(lx=0.15, ly=-0.19, rx=0.05), now=0.0)
    cmd = t.command(0.0)
    assert cmd == (0.0, 0.0, 0.0)
    assert all(math.copysign(1.0, c) == 1.0 for c in cmd)  # no -0.0


# --- dead-man and timeout -----------------------------------------------------------------------


def test_deadman_released_gives_zero() -> None:
    t = teleop()
    t.update(*joy(ly=1.0, deadman=False), now=0.0)
    assert t.command(0.0) == (0.0, 0.0, 0.0)
    assert not t.deadman_held(0.0)
    t.update(*joy(ly=1.0, deadman=True), now=0.1)
    assert t.command(0.1) == (1.0, 0.0, 0.0)
    t.update(*joy(ly=1.0, deadman=False), now=0.2)
    assert t.command(0.2) == (0.0, 0.0, 0.0)


def test_no_message_yet_gives_zero() -> None:
    t = teleop()
    assert t.command(100.0) == (0.0, 0.0, 0.0)
    assert not t.is_fresh(100.0)


def test_joy_timeout_gives_zero() -> None:
    t = teleop(joy_timeout=0.5)
    t.update(*joy(ly=1.0), now=10.0)
    assert t.command(10.5) == (1.0, 0.0, 0.0)  # exactly at the timeout: still fresh
    assert t.command(10.51) == (0.0, 0.0, 0.0)
    assert not t.is_fresh(10.51)
    t.update(*joy(ly=1.0), now=11.0)  # the joystick is back
    assert t.command(11.0) == (1.0, 0.0, 0.0)


# --- messages that do not fit the mapping -------------------------------------------------------


def test_too_few_axes_names_the_axis_and_drops_state() -> None:
    t = teleop()
    t.update(*joy(ly=1.0), now=0.0)
    with pytest.raises(JoyMessageError, match=r"joy message has 2 axes but the mapping uses axis 3 for wz"):
        t.update([0.0, 1.0], [0, 0, 0, 0, 1], now=0.1)
    assert t.command(0.1) == (0.0, 0.0, 0.0)  # not the last good command until the timeout


def test_too_few_buttons_names_the_button() -> None:
    t = Teleop(load_mapping("ps4", TELEOP_DIR))
    with pytest.raises(JoyMessageError, match=r"has 4 buttons but mapping 'ps4' uses button 4 for deadman"):
        t.update([0.0] * 8, [0, 0, 0, 0], now=0.0)


def test_non_finite_axis_is_rejected() -> None:
    t = teleop()
    with pytest.raises(JoyMessageError, match=r"axis 1 \(vx\) is nan"):
        t.update(*joy(ly=math.nan), now=0.0)
    assert t.command(0.0) == (0.0, 0.0, 0.0)


# --- button edges ---------------------------------------------------------------------------------


def test_rising_edge_fires_once_per_press() -> None:
    t = teleop()
    t.update(*joy(), now=0.0)
    assert t.take_actions() == []
    t.update(*joy(pressed=(2,)), now=0.1)  # stand pressed
    t.update(*joy(pressed=(2,)), now=0.2)  # held (joy_node autorepeat)
    t.update(*joy(pressed=(2,)), now=0.3)
    assert t.take_actions() == ["stand"]
    assert t.take_actions() == []
    t.update(*joy(), now=0.4)  # released
    assert t.take_actions() == []
    t.update(*joy(pressed=(2,)), now=0.5)  # pressed again
    t.update(*joy(pressed=(0,)), now=0.6)  # stand released, walk pressed
    assert t.take_actions() == ["stand", "walk"]


def test_buttons_fire_without_deadman() -> None:
    t = teleop()
    t.update(*joy(deadman=False), now=0.0)
    t.update(*joy(deadman=False, pressed=(1,)), now=0.1)
    assert t.take_actions() == ["stop"]


def test_stop_wins_over_simultaneous_presses() -> None:
    t = teleop()
    t.update(*joy(), now=0.0)
    t.update(*joy(pressed=(0, 1, 2)), now=0.1)
    assert t.take_actions() == ["stop"]


def test_button_held_at_first_message_does_not_fire() -> None:
    t = teleop()
    t.update(*joy(pressed=(0,)), now=0.0)
    assert t.take_actions() == []
    t.update(*joy(), now=0.1)
    t.update(*joy(pressed=(0,)), now=0.2)
    assert t.take_actions() == ["walk"]


def test_deadman_is_not_an_action() -> None:
    t = teleop()
    t.update(*joy(deadman=False), now=0.0)
    t.update(*joy(deadman=True), now=0.1)
    assert t.take_actions() == []
