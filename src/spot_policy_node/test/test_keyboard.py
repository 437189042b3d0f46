"""Keys -> velocity command and mode actions (the terminal side is tested through a pty in
tests/test_teleop_job.py)."""

from __future__ import annotations

from spot_policy.core.keyboard import KeyboardTeleop


def test_keys_step_clip_and_zero() -> None:
    keys = KeyboardTeleop()
    assert keys.feed("wwwaq").changed
    assert keys.velocity() == (0.3, 0.1, 0.2)
    keys.feed("w" * 20 + "d" * 20 + "e" * 20)
    assert keys.velocity() == (1.0, -0.5, -1.0)  # clipped to the limits
    keys.feed(" ")
    assert keys.velocity() == (0.0, 0.0, 0.0)
    keys.feed("sssx")
    assert keys.velocity() == (0.0, 0.0, 0.0)
    assert "vx +0.0 m/s" in keys.status("walking")


def test_arrow_keys_even_when_split_across_reads() -> None:
    keys = KeyboardTeleop()
    keys.feed("\x1b[A\x1b[A")
    assert keys.velocity() == (0.2, 0.0, 0.0)
    first = keys.feed("\x1b[")
    assert not first.quit and not first.changed
    keys.feed("D")  # left arrow completes: turn left
    assert keys.velocity() == (0.2, 0.0, 0.2)


def test_digits_are_actions_and_stop_zeroes() -> None:
    keys = KeyboardTeleop()
    keys.feed("ww")
    result = keys.feed("123")
    assert result.actions == ["stand", "walk", "stop"]
    assert keys.velocity() == (0.0, 0.0, 0.0)


def test_quit_keys() -> None:
    for key in ("\x03", "\x04", "\x1b"):
        keys = KeyboardTeleop()
        result = keys.feed("w" + key + "w")
        assert result.quit and keys.velocity() == (0.1, 0.0, 0.0)  # nothing after the quit key counts
