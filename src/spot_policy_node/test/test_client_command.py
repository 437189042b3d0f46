"""A remote client's velocity commands: parsed strictly (nothing non-finite), held, then one zero."""

from __future__ import annotations

import pytest

from spot_policy.core.client_command import ZERO, ClientCommandError, CommandHold, checked, twist_from_json


def test_twist_json_of_the_teleop_panel() -> None:
    panel = b'{"linear": {"x": 0.5, "y": 0, "z": 0}, "angular": {"x": 0, "y": 0, "z": -1}}'
    assert twist_from_json(panel) == (0.5, 0.0, -1.0)
    assert twist_from_json('{"angular": {"z": 0.25}}') == (0.0, 0.0, 0.25)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "must be an object"),
        (b'{"linear": 3}', "must be objects"),
        (b'{"linear": {"x": NaN}}', "finite"),
        (b'{"linear": {"x": Infinity}}', "finite"),
        (b'{"linear": {"x": "fast"}}', "finite"),
        (b'{"angular": {"z": true}}', "finite"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_unusable_commands_are_refused_with_the_reason(payload: bytes, why: str) -> None:
    with pytest.raises(ClientCommandError, match=why):
        twist_from_json(payload)


def test_checked_gives_no_negative_zero() -> None:
    assert str(checked((-0.0, 0, 1))) == "(0.0, 0.0, 1.0)"


def test_hold_then_one_zero_then_silence() -> None:
    hold = CommandHold(1.5)
    assert hold.due(0.0) is None  # nothing before a client spoke
    hold.update((0.5, 0.0, 0.2), 10.0)
    assert hold.due(10.0) == hold.due(11.4) == (0.5, 0.0, 0.2)
    assert hold.due(11.6) == ZERO
    assert hold.due(11.7) is None
    hold.update((0.3, 0.0, 0.0), 12.0)
    hold.release()  # the client unadvertised: stop at once
    assert hold.due(12.1) == ZERO
    assert hold.due(12.2) is None
    with pytest.raises(ValueError, match="hold time"):
        CommandHold(float("nan"))
