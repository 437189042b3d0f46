"""Gamepad teleop core: sensor_msgs/Joy axes and buttons -> (vx, vy, wz) and policy-node actions.

No ROS imports. The node (``teleop_node.py``) feeds it joy messages and a monotonic time; this
module owns the safety-relevant rules so they are unit-tested without DDS:

- the command is zero unless the dead-man button is held,
- the command is zero when the last joy message is older than the joy timeout (lost joystick),
- a deadband around the stick centre, rescaled so the output has no step at the deadband edge,
- service actions ("stand", "walk", "stop") fire once per press (rising edge only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

#: Velocity components, in the order ``Teleop.command`` returns them.
VELOCITIES: tuple[str, ...] = ("vx", "vy", "wz")
#: Service actions a button can trigger (Trigger services of the policy node of the same name).
ACTIONS: tuple[str, ...] = ("stand", "walk", "stop")
DEFAULT_SCALES: dict[str, float] = {"vx": 1.0, "vy": 0.5, "wz": 1.0}  # m/s, m/s, rad/s
DEFAULT_DEADBAND = 0.1
DEFAULT_JOY_TIMEOUT = 0.5  # s

_TOP_KEYS = ("name", "axes", "deadband", "deadman", "buttons", "joy_timeout")
_AXIS_KEYS = ("index", "scale", "invert")

Command = tuple[float, float, float]
ZERO: Command = (0.0, 0.0, 0.0)


class MappingError(ValueError):
    """A joy mapping (YAML or constructor arguments) is invalid; the message is one line."""


class JoyMessageError(ValueError):
    """A joy message does not fit the mapping (too few axes/buttons, non-finite axis)."""


@dataclass(frozen=True)
class AxisMapping:
    """One stick axis driving one velocity: full deflection gives ``scale`` (m/s or rad/s)."""

    index: int
    scale: float
    invert: bool = False


@dataclass(frozen=True)
class JoyMapping:
    """Which joy axes and buttons do what; validated on construction."""

    vx: AxisMapping
    vy: AxisMapping
    wz: AxisMapping
    deadman: int
    stand: int
    walk: int
    stop: int
    deadband: float = DEFAULT_DEADBAND
    joy_timeout: float = DEFAULT_JOY_TIMEOUT
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for key in VELOCITIES:
            axis = getattr(self, key)
            if not isinstance(axis, AxisMapping):
                raise MappingError(f"axes.{key} must be an AxisMapping, got {type(axis).__name__}")
            _check_index(axis.index, f"axes.{key}.index")
            if not _is_number(axis.scale) or not math.isfinite(axis.scale) or axis.scale < 0:
                raise MappingError(f"axes.{key}.scale must be a finite number >= 0, got {axis.scale!r}")
            if not isinstance(axis.invert, bool):
                raise MappingError(f"axes.{key}.invert must be true or false, got {axis.invert!r}")
        used: dict[int, str] = {}
        for key in VELOCITIES:
            index = getattr(self, key).index
            if index in used:
                raise MappingError(f"axes.{used[index]} and axes.{key} both use axis {index}")
            used[index] = key
        _check_index(self.deadman, "deadman")
        buttons: dict[int, str] = {self.deadman: "deadman"}
        for action in ACTIONS:
            index = getattr(self, action)
            _check_index(index, f"buttons.{action}")
            if index in buttons:
                # A shared button would, e.g., call "walk" every time the dead-man is pressed.
                raise MappingError(f"buttons.{action} uses button {index}, already used by {buttons[index]}")
            buttons[index] = f"buttons.{action}"
        if not _is_number(self.deadband) or not 0.0 <= self.deadband < 1.0:
            raise MappingError(f"deadband must be a number in [0, 1), got {self.deadband!r}")
        if not _is_number(self.joy_timeout) or not math.isfinite(self.joy_timeout) or self.joy_timeout <= 0:
            raise MappingError(f"joy_timeout must be a finite number > 0 (seconds), got {self.joy_timeout!r}")

    @property
    def axes(self) -> dict[str, AxisMapping]:
        """``{"vx": ..., "vy": ..., "wz": ...}``."""
        return {key: getattr(self, key) for key in VELOCITIES}

    @property
    def buttons(self) -> dict[str, int]:
        """``{"stand": i, "walk": j, "stop": k}``."""
        return {action: getattr(self, action) for action in ACTIONS}

    @classmethod
    def from_dict(cls, data: Any, source: str = "teleop mapping") -> JoyMapping:
        """Build from a parsed YAML document; errors name ``source``, the key and the valid keys."""
        try:
            top = _as_mapping(data, "the document", _TOP_KEYS)
            for required in ("axes", "deadman", "buttons"):
                if required not in top:
                    raise MappingError(f"missing key '{required}'")
            axes_doc = _as_mapping(top["axes"], "axes", VELOCITIES)
            axes: dict[str, AxisMapping] = {}
            for key in VELOCITIES:
                if key not in axes_doc:
                    raise MappingError(f"missing key 'axes.{key}'")
                axis = _as_mapping(axes_doc[key], f"axes.{key}", _AXIS_KEYS)
                if "index" not in axis:
                    raise MappingError(f"missing key 'axes.{key}.index'")
                axes[key] = AxisMapping(
                    index=axis["index"],
                    scale=axis.get("scale", DEFAULT_SCALES[key]),
                    invert=axis.get("invert", False),
                )
            buttons = _as_mapping(top["buttons"], "buttons", ACTIONS)
            for action in ACTIONS:
                if action not in buttons:
                    raise MappingError(f"missing key 'buttons.{action}'")
            name = top.get("name", "")
            if not isinstance(name, str):
                raise MappingError(f"name must be a string, got {name!r}")
            return cls(
                **axes,
                deadman=top["deadman"],
                **{action: buttons[action] for action in ACTIONS},
                deadband=top.get("deadband", DEFAULT_DEADBAND),
                joy_timeout=top.get("joy_timeout", DEFAULT_JOY_TIMEOUT),
                name=name,
            )
        except MappingError as exc:
            raise MappingError(f"{source}: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> JoyMapping:
        """Load a mapping file; the mapping's name defaults to the file's stem."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise MappingError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            detail = " ".join(str(exc).split())
            raise MappingError(f"{path}: not valid YAML: {detail}") from None
        mapping = cls.from_dict(data, source=str(path))
        if not mapping.name:
            mapping = replace(mapping, name=path.stem)
        return mapping


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_index(value: object, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MappingError(f"{where} must be a non-negative integer, got {value!r}")


def _as_mapping(value: object, where: str, valid: Sequence[str]) -> Mapping[str, Any]:
    """``value`` as a mapping whose keys are all in ``valid`` (a typo must not silently default)."""
    if not isinstance(value, Mapping):
        raise MappingError(f"{where} must be a mapping, got {type(value).__name__}")
    for key in value:
        if key not in valid:
            prefix = "" if where == "the document" else f"{where}."
            raise MappingError(f"unknown key '{prefix}{key}' (valid: {', '.join(valid)})")
    return value


def apply_deadband(value: float, deadband: float) -> float:
    """Clip to [-1, 1], zero inside the deadband, rescale the rest to [0, 1] with no step at the edge."""
    value = min(1.0, max(-1.0, value))
    magnitude = abs(value)
    if magnitude <= deadband:
        return 0.0
    return math.copysign((magnitude - deadband) / (1.0 - deadband), value)


class Teleop:
    """Joy state -> velocity command and button actions; time is any monotonic clock in seconds."""

    def __init__(self, mapping: JoyMapping) -> None:
        self.mapping = mapping
        self._axes: dict[str, float] = {}
        self._deadman = False
        self._last_time: float | None = None
        self._previous: dict[str, bool] | None = None  # action -> pressed in the last message
        self._pending: list[str] = []
        self._was_held = False  # the last output() was a command from a held dead-man
        self._max_axis = max(axis.index for axis in mapping.axes.values())
        self._max_button = max(mapping.deadman, *mapping.buttons.values())

    def update(self, axes: Sequence[float], buttons: Sequence[int], now: float) -> None:
        """Take one joy message received at ``now``.

        A message that does not fit the mapping raises ``JoyMessageError`` and also drops the
        joystick state, so the command is zero until a valid message arrives (a wrong controller
        must not keep the last good command alive until the timeout).
        """
        m = self.mapping
        label = f"mapping '{m.name}'" if m.name else "the mapping"
        try:
            if len(axes) <= self._max_axis:
                key = next(k for k, a in m.axes.items() if a.index >= len(axes))
                raise JoyMessageError(
                    f"joy message has {len(axes)} axes but {label} uses axis "
                    f"{m.axes[key].index} for {key}; check the controller or the mapping"
                )
            if len(buttons) <= self._max_button:
                named = {"deadman": m.deadman, **m.buttons}
                key = next(k for k, b in named.items() if b >= len(buttons))
                raise JoyMessageError(
                    f"joy message has {len(buttons)} buttons but {label} uses button "
                    f"{named[key]} for {key}; check the controller or the mapping"
                )
            values: dict[str, float] = {}
            for key, axis in m.axes.items():
                value = float(axes[axis.index])
                if not math.isfinite(value):
                    raise JoyMessageError(f"joy axis {axis.index} ({key}) is {value}")
                values[key] = value
        except JoyMessageError:
            self._last_time = None
            self._deadman = False
            self._previous = None
            raise
        pressed = {action: bool(buttons[index]) for action, index in m.buttons.items()}
        if self._previous is not None:
            rising = [a for a in ACTIONS if pressed[a] and not self._previous[a]]
            # "stop" wins: a simultaneous "walk" must not race it to the policy node.
            self._pending.extend(["stop"] if "stop" in rising else rising)
        # The first message (or the first after an invalid one) is a baseline: a button already
        # held when teleop first hears the joystick was not seen being pressed, so it does not fire.
        self._previous = pressed
        self._axes = values
        self._deadman = bool(buttons[m.deadman])
        self._last_time = now

    def take_actions(self) -> list[str]:
        """Actions whose button was pressed since the last call, each once per press."""
        actions, self._pending = self._pending, []
        return actions

    def is_fresh(self, now: float) -> bool:
        """A valid joy message arrived within the joy timeout."""
        return self._last_time is not None and now - self._last_time <= self.mapping.joy_timeout

    def deadman_held(self, now: float) -> bool:
        """The dead-man button is held in a fresh message."""
        return self._deadman and self.is_fresh(now)

    def command(self, now: float) -> Command:
        """(vx m/s, vy m/s, wz rad/s); zero unless the dead-man is held in a fresh message."""
        if not self.deadman_held(now):
            return ZERO
        out = []
        for key, axis in self.mapping.axes.items():
            value = apply_deadband(self._axes[key], self.mapping.deadband) * axis.scale
            out.append((-value if axis.invert else value) + 0.0)  # + 0.0: no -0.0 on the wire
        return (out[0], out[1], out[2])

    def output(self, now: float) -> Command | None:
        """What to publish now (ROS teleop habit): the command while the dead-man is held in a fresh
        message, one zero when that ends (released, joystick lost, a bad message), else nothing, so
        another cmd_vel source (a planner, ``ros2 topic pub``) is not fought by a stream of zeros."""
        if self.deadman_held(now):
            self._was_held = True
            return self.command(now)
        if self._was_held:
            self._was_held = False
            return ZERO
        return None

    @property
    def driving(self) -> bool:
        """The last :meth:`output` was a command from a held dead-man."""
        return self._was_held


def available_mappings(directory: Path) -> list[str]:
    """Mapping names (file stems) shipped in ``directory``."""
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def resolve_mapping(name: str, directory: Path) -> Path:
    """A mapping name (``ps4`` -> ``directory/ps4.yaml``) or a path to a YAML file -> the file."""
    if not name:
        raise MappingError(f"empty teleop mapping name (available in {directory}: {_listing(directory)})")
    is_path = "/" in name or name.endswith((".yaml", ".yml"))
    path = Path(name).expanduser() if is_path else directory / f"{name}.yaml"
    if not path.is_file():
        raise MappingError(
            f"teleop mapping '{name}' not found: {path} (available in {directory}: {_listing(directory)})"
        )
    return path


def load_mapping(name: str, directory: Path) -> JoyMapping:
    """``resolve_mapping`` then ``JoyMapping.from_yaml``."""
    return JoyMapping.from_yaml(resolve_mapping(name, directory))


def _listing(directory: Path) -> str:
    return ", ".join(available_mappings(directory)) or "none"
