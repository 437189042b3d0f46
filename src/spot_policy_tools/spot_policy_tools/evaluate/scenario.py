"""Scenarios: the YAML a test engineer writes, validated, expanded into concrete trials.

A suite file (``config/scenarios/<suite>.yaml``)::

    suite: quick                  # name (default: the file's stem)
    description: ...
    seed: 16                      # with the scenario name and trial index, seeds every trial
    defaults: {trials: 2, ...}    # any scenario key, merged under every scenario
    thresholds: {...}             # suite-wide thresholds, under every scenario's own
    scenarios:
      - name: forward             # unique, [A-Za-z0-9_.=-]
        group: tracking           # report section: tracking, terrain, body, push, sensing, safety
        description: walk forward at half the trained speed
        trials: 3                 # seeded repetitions (initial pose, sensor noise, rough ground)
        initial: {stand_s: 1.5, settle_s: 1.0, joint_noise_rad: 0.05}   # stand_s 0: start walking at once
        commands:                 # the command profile, in the profile format (config/profiles)
          - {name: walk, mode: walk, duration: 6, cmd_vel: [0.5, 0.0, 0.0]}
        command_grid: {vx: [-0.5, 0, 0.5], vy: [0], wz: [0], each_s: 4, fraction_of_range: true}
        environment: {friction: 0.8, payload_kg: 0, payload_offset_m: [0, 0, 0], kp_scale: 1,
                      torque_limit_scale: 1, terrain: {kind: slope, slope_deg: 8}}
        sensing: {isaaclab_noise: true, noise_scale: 1, imu_gyro_bias: [0, 0, 0], imu_tilt_bias_deg: [0, 0],
                  velocity_bias: [0, 0, 0], velocity_drift: 0, latency_ms: 0, command_latency_ms: 0,
                  drop_probability: 0}
        pushes: [{at_s: 3.0, speed_m_s: 0.5, direction_deg: 90}]
        faults: [{at_s: 4.0, kind: nan}, {at_s: 4.0, kind: stale, topic: imu, duration_s: 0}]
        thresholds: {survival_rate_min: 1.0, tracking_vxy_max_m_s: 0.15, ...}
        sweep: {key: environment.friction, values: [0.3, 0.5, 0.8, 1.2]}

Times (``at_s``) count from the start of ``commands``, after the initial stand (``stand_s``) and
a zero-velocity walk (``settle_s``) that every trial begins with. ``command_grid`` appends one
segment per (vx, vy, wz) point; with ``fraction_of_range`` the values are fractions of the
policy's trained range (env.yaml's command ranges: +f of the maximum, -f of the minimum), so the
grid always lies inside what the policy was trained on. ``sweep`` turns one entry into one
scenario per value (``name[key=value]``): the points of a robustness curve. ``isaaclab_noise``
takes the noise of every observation term from the policy's own env.yaml (times ``noise_scale``).

A malformed file raises :class:`ScenarioError` with one line: the file, the key and the fix.
"""

from __future__ import annotations

import copy
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spot_policy.core.profile import MODES

GROUPS = ("tracking", "terrain", "body", "push", "sensing", "safety")
FAULT_KINDS = ("nan", "stale")
STALE_TOPICS = ("joint_states", "imu", "odom")
TERRAIN_KINDS = ("flat", "slope", "rough", "steps")
#: The shortest initial stand: one control step of a 50 Hz policy.
FIRST_STEP_S = 0.02
_NAME = re.compile(r"^[A-Za-z0-9_.=+\[\]-]+$")  # [key=value]: a sweep's point

#: Threshold keys: (metric the verdict reads, "min" or "max", unit). Reasons: docs/EVALUATION.md.
THRESHOLD_KEYS: dict[str, tuple[str, str, str]] = {
    "survival_rate_min": ("survived", "min", "fraction of trials"),
    "tracking_vxy_max_m_s": ("tracking_vxy_worst_m_s", "max", "m/s"),
    "tracking_wz_max_rad_s": ("tracking_wz_worst_rad_s", "max", "rad/s"),
    "tilt_max_deg": ("tilt_max_deg", "max", "deg"),
    "base_height_min_m": ("base_height_min_m", "min", "m"),
    "foot_slip_max_m_s": ("foot_slip_m_s", "max", "m/s"),
    "action_rate_max": ("action_rate", "max", "raw action units per step"),
    "torque_rms_max_nm": ("torque_rms_nm", "max", "N*m"),
    "fault_detect_max_s": ("fault_detect_s", "max", "s"),
    "safe_state_max_s": ("safe_state_s", "max", "s"),
    "push_survived_min_m_s": ("push_survived_m_s", "min", "m/s"),
}

_TOP_KEYS = {"suite", "description", "seed", "defaults", "thresholds", "scenarios"}
_SCENARIO_KEYS = {
    "name",
    "group",
    "description",
    "trials",
    "initial",
    "commands",
    "command_grid",
    "environment",
    "sensing",
    "pushes",
    "faults",
    "thresholds",
    "sweep",
}
_INITIAL_KEYS = {"stand_s", "settle_s", "joint_noise_rad"}
_GRID_KEYS = {"vx", "vy", "wz", "each_s", "fraction_of_range"}
_ENV_KEYS = {"friction", "payload_kg", "payload_offset_m", "kp_scale", "torque_limit_scale", "terrain"}
_TERRAIN_KEYS = {"kind", "slope_deg", "rough_amplitude_m", "step_height_m", "step_length_m", "start_x_m"}
_SENSING_KEYS = {
    "isaaclab_noise",
    "noise_scale",
    "imu_gyro_bias",
    "imu_tilt_bias_deg",
    "velocity_bias",
    "velocity_drift",
    "latency_ms",
    "command_latency_ms",
    "drop_probability",
}
_PUSH_KEYS = {"at_s", "speed_m_s", "direction_deg"}
_FAULT_KEYS = {"at_s", "kind", "topic", "duration_s"}
_SEGMENT_KEYS = {"name", "mode", "duration", "cmd_vel"}


class ScenarioError(ValueError):
    """A suite file that cannot be used: one line with the file, the key and the fix."""


@dataclass(frozen=True)
class CommandSegment:
    name: str
    mode: str
    start_s: float  # since the commands began (after the initial phase)
    duration_s: float
    cmd: tuple[float, float, float]
    grid: bool = False  # a point of the command grid (the heat map)

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True)
class Push:
    at_s: float
    speed_m_s: float
    direction_deg: float  # 0: +x (forward), 90: +y (left), in the world frame

    @property
    def velocity(self) -> tuple[float, float, float]:
        a = math.radians(self.direction_deg)
        return (self.speed_m_s * math.cos(a), self.speed_m_s * math.sin(a), 0.0)


@dataclass(frozen=True)
class Fault:
    at_s: float
    kind: str  # nan | stale
    topic: str = "joint_states"
    duration_s: float = 0.0  # stale: <= 0 until the end


@dataclass(frozen=True)
class Scenario:
    """One concrete scenario (after sweep expansion); its grid is still in fractions if asked."""

    name: str
    group: str
    description: str
    trials: int
    stand_s: float
    settle_s: float
    joint_noise_rad: float
    commands: tuple[CommandSegment, ...]
    grid: Mapping[str, Any] | None
    environment: Mapping[str, Any]
    sensing: Mapping[str, Any]
    pushes: tuple[Push, ...]
    faults: tuple[Fault, ...]
    thresholds: Mapping[str, float]
    curve: tuple[str, float] | None = None  # (sweep key, value): a point of a robustness curve
    source: str = ""

    @property
    def stand_phase_s(self) -> float:
        """The initial stand: ``stand_s``, and at least one control step (``stand_s: 0``). The node's
        stand answers a repeated start state identically, the policy's walk would not; so every trial
        enters the policy's control on a step the sim bridge's barrier pins down."""
        return max(self.stand_s, FIRST_STEP_S)

    @property
    def lead_s(self) -> float:
        """Sim seconds before the commands start (initial stand + zero-velocity walk)."""
        return self.stand_phase_s + self.settle_s

    def segments(self, ranges: Mapping[str, tuple[float, float]] | None = None) -> tuple[CommandSegment, ...]:
        """The commands with the grid appended, in absolute values for a policy of these ``ranges``."""
        segments = list(self.commands)
        if self.grid:
            t = segments[-1].end_s if segments else 0.0
            frac = bool(self.grid.get("fraction_of_range", True))
            each = float(self.grid.get("each_s", 4.0))
            for vx in self.grid.get("vx", [0.0]):
                for vy in self.grid.get("vy", [0.0]):
                    for wz in self.grid.get("wz", [0.0]):
                        cmd = (float(vx), float(vy), float(wz))
                        if frac:
                            if ranges is None:
                                raise ScenarioError(f"{self.source}: {self.name}: command_grid needs the policy ranges")
                            cmd = tuple(_of_range(f, ranges[k]) for f, k in zip(cmd, ("vx", "vy", "wz"), strict=True))
                        label = f"grid_{cmd[0]:+.2f}_{cmd[1]:+.2f}_{cmd[2]:+.2f}"
                        segments.append(CommandSegment(label, "walk", t, each, cmd, grid=True))  # type: ignore[arg-type]
                        t += each
        return tuple(segments)

    def duration_s(self) -> float:
        """Sim seconds of one trial (initial phase + commands)."""
        segments = self.segments(_UNIT_RANGES)
        return self.lead_s + (segments[-1].end_s if segments else 0.0)


_UNIT_RANGES = {"vx": (-1.0, 1.0), "vy": (-1.0, 1.0), "wz": (-1.0, 1.0)}


def _of_range(fraction: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return round(fraction * high if fraction >= 0 else -fraction * low, 6)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    seed: int
    scenarios: tuple[Scenario, ...]
    source: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def scenario(self, name: str) -> Scenario:
        return next(s for s in self.scenarios if s.name == name)

    @property
    def trial_count(self) -> int:
        return sum(s.trials for s in self.scenarios)

    @property
    def sim_seconds(self) -> float:
        return sum(s.trials * s.duration_s() for s in self.scenarios)


def trial_seed(suite_seed: int, scenario: str, trial: int) -> int:
    """The seed of one trial: the same on any machine, worker or order."""
    return zlib.crc32(f"{suite_seed}:{scenario}:{trial}".encode()) & 0x7FFFFFFF


# ------------------------------------------------------------------------------------- parsing


class _Checker:
    """Reads one scenario's keys, raising one-line errors that name the file and the key."""

    def __init__(self, source: str, where: str) -> None:
        self.source, self.where = source, where

    def fail(self, key: str, problem: str, fix: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {self.where}: '{key}' {problem}; fix: {fix}")

    def keys(self, data: Any, allowed: set[str], key: str) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise self.fail(key, f"is {type(data).__name__}, not a mapping", f"write {key}: {{...}}")
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", "is not a known key", f"use only {', '.join(sorted(allowed))}")
        return data

    def number(self, data: Mapping[str, Any], key: str, default: float, low: float, high: float, path: str) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(f"{path}{key}", f"is {value!r}, not a number", f"give a number in {low:g}..{high:g}")
        if not low <= value <= high:
            raise self.fail(
                f"{path}{key}", f"is {value:g}, outside {low:g}..{high:g}", f"use a value in {low:g}..{high:g}"
            )
        return float(value)

    def vector(self, data: Mapping[str, Any], key: str, n: int, bound: float, path: str) -> list[float]:
        value = data.get(key, [0.0] * n)
        ok = isinstance(value, list) and len(value) == n
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if not ok or not all(abs(v) <= bound for v in value):
            raise self.fail(f"{path}{key}", f"is {value!r}", f"write {n} numbers within +-{bound:g}")
        return [float(v) for v in value]


def _parse_segments(check: _Checker, raw: Any) -> tuple[CommandSegment, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise check.fail("commands", "is not a list", "write commands: [{name, mode, duration, cmd_vel}, ...]")
    out: list[CommandSegment] = []
    t = 0.0
    for i, seg in enumerate(raw):
        key = f"commands[{i}]"
        seg = check.keys(seg, _SEGMENT_KEYS, key)
        mode = seg.get("mode", "walk")
        if mode not in MODES:
            raise check.fail(f"{key}.mode", f"is {mode!r}", f"use one of {', '.join(MODES)}")
        duration = check.number(seg, "duration", math.nan, 0.02, 600.0, f"{key}.")
        cmd = check.vector(seg, "cmd_vel", 3, 5.0, f"{key}.")
        if mode != "walk" and any(cmd):
            raise check.fail(f"{key}.cmd_vel", f"is non-zero in mode {mode}", "use mode: walk to command motion")
        name = seg.get("name", f"segment_{i + 1}")
        if not isinstance(name, str) or not _NAME.match(name):
            raise check.fail(f"{key}.name", f"is {name!r}", "use letters, digits and _ . = + -")
        out.append(CommandSegment(name, mode, t, duration, (cmd[0], cmd[1], cmd[2])))
        t += duration
    return tuple(out)


def _parse_scenario(raw: Mapping[str, Any], source: str, index: int, curve: tuple[str, float] | None) -> Scenario:
    name = raw.get("name")
    where = f"scenarios[{index}]" + (f" ({name})" if isinstance(name, str) else "")
    check = _Checker(source, where)
    data = check.keys(dict(raw), _SCENARIO_KEYS, "scenario")
    if not isinstance(name, str) or not _NAME.match(name):
        raise check.fail("name", f"is {name!r}", "give each scenario a unique name of letters, digits and _ . = + -")
    group = data.get("group", "tracking")
    if group not in GROUPS:
        raise check.fail("group", f"is {group!r}", f"use one of {', '.join(GROUPS)}")
    trials = data.get("trials", 1)
    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= 100:
        raise check.fail("trials", f"is {trials!r}", "give a whole number of trials in 1..100")
    initial = check.keys(data.get("initial"), _INITIAL_KEYS, "initial")
    stand_s = check.number(initial, "stand_s", 1.5, 0.0, 30.0, "initial.")  # 0: start in walk
    settle_s = check.number(initial, "settle_s", 1.0, 0.0, 30.0, "initial.")
    joint_noise = check.number(initial, "joint_noise_rad", 0.05, 0.0, 0.3, "initial.")

    commands = _parse_segments(check, data.get("commands"))
    grid = None
    if data.get("command_grid") is not None:
        grid = check.keys(data["command_grid"], _GRID_KEYS, "command_grid")
        for axis in ("vx", "vy", "wz"):
            values = grid.get(axis, [0.0])
            ok = isinstance(values, list) and values and all(isinstance(v, (int, float)) for v in values)
            if not ok:
                raise check.fail(
                    f"command_grid.{axis}", f"is {values!r}", "write a list of numbers, e.g. [-0.5, 0, 0.5]"
                )
            if grid.get("fraction_of_range", True) and any(abs(v) > 1.0 for v in values):
                raise check.fail(
                    f"command_grid.{axis}", f"has {values!r}", "with fraction_of_range use fractions within -1..1"
                )
        check.number(grid, "each_s", 4.0, 1.0, 60.0, "command_grid.")
    if not commands and not grid:
        raise check.fail("commands", "are missing", "give commands: [...] or a command_grid: {...}")

    env = check.keys(data.get("environment"), _ENV_KEYS, "environment")
    environment: dict[str, Any] = {
        "friction": check.number(env, "friction", 0.8, 0.05, 2.0, "environment."),
        "payload_kg": check.number(env, "payload_kg", 0.0, 0.0, 30.0, "environment."),
        "payload_offset_m": check.vector(env, "payload_offset_m", 3, 0.5, "environment."),
        "kp_scale": check.number(env, "kp_scale", 1.0, 0.5, 1.5, "environment."),
        "torque_limit_scale": check.number(env, "torque_limit_scale", 1.0, 0.5, 1.5, "environment."),
    }
    terrain = check.keys(env.get("terrain"), _TERRAIN_KEYS, "environment.terrain")
    kind = terrain.get("kind", "flat")
    if kind not in TERRAIN_KINDS:
        raise check.fail("environment.terrain.kind", f"is {kind!r}", f"use one of {', '.join(TERRAIN_KINDS)}")
    environment["terrain"] = {
        "kind": kind,
        "slope_deg": check.number(terrain, "slope_deg", 0.0, -15.0, 15.0, "environment.terrain."),
        "rough_amplitude_m": check.number(terrain, "rough_amplitude_m", 0.03, 0.0, 0.08, "environment.terrain."),
        "step_height_m": check.number(terrain, "step_height_m", 0.04, -0.12, 0.12, "environment.terrain."),
        "step_length_m": check.number(terrain, "step_length_m", 0.6, 0.2, 3.0, "environment.terrain."),
        "start_x_m": check.number(terrain, "start_x_m", 1.0, 0.6, 10.0, "environment.terrain."),
    }

    sense = check.keys(data.get("sensing"), _SENSING_KEYS, "sensing")
    noise = sense.get("isaaclab_noise", False)
    if not isinstance(noise, bool):
        raise check.fail("sensing.isaaclab_noise", f"is {noise!r}", "write true or false")
    sensing: dict[str, Any] = {
        "isaaclab_noise": noise,
        "noise_scale": check.number(sense, "noise_scale", 1.0, 0.0, 5.0, "sensing."),
        "imu_gyro_bias": check.vector(sense, "imu_gyro_bias", 3, 1.0, "sensing."),
        "imu_tilt_bias_deg": check.vector(sense, "imu_tilt_bias_deg", 2, 15.0, "sensing."),
        "velocity_bias": check.vector(sense, "velocity_bias", 3, 1.0, "sensing."),
        "velocity_drift": check.number(sense, "velocity_drift", 0.0, 0.0, 1.0, "sensing."),
        "latency_ms": check.number(sense, "latency_ms", 0.0, 0.0, 100.0, "sensing."),
        "command_latency_ms": check.number(sense, "command_latency_ms", 0.0, 0.0, 100.0, "sensing."),
        "drop_probability": check.number(sense, "drop_probability", 0.0, 0.0, 0.9, "sensing."),
    }

    segments_end = max([s.end_s for s in commands] + [0.0])
    if grid:
        n = 1
        for axis in ("vx", "vy", "wz"):
            n *= len(grid.get(axis, [0.0]))
        segments_end += n * float(grid.get("each_s", 4.0))

    pushes = []
    for i, p in enumerate(data.get("pushes") or []):
        p = check.keys(p, _PUSH_KEYS, f"pushes[{i}]")
        pushes.append(
            Push(
                check.number(p, "at_s", math.nan, 0.0, segments_end, f"pushes[{i}]."),
                check.number(p, "speed_m_s", math.nan, 0.0, 5.0, f"pushes[{i}]."),
                check.number(p, "direction_deg", 0.0, -360.0, 360.0, f"pushes[{i}]."),
            )
        )
    faults = []
    for i, f in enumerate(data.get("faults") or []):
        f = check.keys(f, _FAULT_KEYS, f"faults[{i}]")
        kind = f.get("kind")
        if kind not in FAULT_KINDS:
            raise check.fail(f"faults[{i}].kind", f"is {kind!r}", f"use one of {', '.join(FAULT_KINDS)}")
        topic = f.get("topic", "joint_states")
        if topic not in STALE_TOPICS:
            raise check.fail(f"faults[{i}].topic", f"is {topic!r}", f"use one of {', '.join(STALE_TOPICS)}")
        faults.append(
            Fault(
                check.number(f, "at_s", math.nan, 0.0, segments_end, f"faults[{i}]."),
                kind,
                topic,
                check.number(f, "duration_s", 0.0, 0.0, 600.0, f"faults[{i}]."),
            )
        )
    if len(faults) > 1:
        raise check.fail("faults", "has more than one fault", "inject one fault per scenario")

    thresholds = check.keys(data.get("thresholds"), set(THRESHOLD_KEYS), "thresholds")
    for key, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise check.fail(f"thresholds.{key}", f"is {value!r}", "give a number")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise check.fail("description", f"is {description!r}", "write a sentence in quotes")
    return Scenario(
        name=name,
        group=group,
        description=description.strip(),
        trials=trials,
        stand_s=stand_s,
        settle_s=settle_s,
        joint_noise_rad=joint_noise,
        commands=commands,
        grid=grid,
        environment=environment,
        sensing=sensing,
        pushes=tuple(pushes),
        faults=tuple(faults),
        thresholds={k: float(v) for k, v in thresholds.items()},
        curve=curve,
        source=source,
    )


def _set_path(data: Any, dotted: str, value: Any) -> None:
    """Set ``value`` at a dotted key; a number indexes a list, ``*`` means every element."""
    part, _, rest = dotted.partition(".")
    if isinstance(data, list):
        targets = range(len(data)) if part == "*" else [int(part)]
        for i in targets:
            if rest:
                _set_path(data[i], rest, value)
            else:
                data[i] = value
        return
    if not isinstance(data, dict):
        raise KeyError(dotted)
    if rest:
        _set_path(data.setdefault(part, {}), rest, value)
    else:
        data[part] = value


def _sweep_point(key: str, value: Any) -> tuple[tuple[str, float] | None, str]:
    """A sweep value's place on its robustness curve and its text in the scenario name: a number as
    itself, a vector by its largest component (e.g. a payload offset along x), anything else no curve."""

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if number(value):
        return (key, float(value)), f"{value:g}"
    if isinstance(value, list) and value and all(number(v) for v in value):
        largest = max(value, key=abs)
        return (key, float(largest)), "_".join(f"{v:g}" for v in value)
    return None, str(value)


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_suite(data: Any, source: str = "<suite>") -> Suite:
    """A suite from parsed YAML; raises :class:`ScenarioError` (one line) on anything malformed."""
    check = _Checker(source, "suite")
    data = check.keys(data, _TOP_KEYS, "file")
    raw_scenarios = data.get("scenarios")
    if not isinstance(raw_scenarios, list) or not raw_scenarios:
        raise check.fail("scenarios", "is missing or empty", "add a list under scenarios:")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise check.fail("seed", f"is {seed!r}", "give a whole number")
    defaults = check.keys(data.get("defaults"), _SCENARIO_KEYS - {"name"}, "defaults")
    suite_thresholds = check.keys(data.get("thresholds"), set(THRESHOLD_KEYS), "thresholds")
    scenarios: list[Scenario] = []
    for i, raw in enumerate(raw_scenarios):
        if not isinstance(raw, dict):
            raise ScenarioError(
                f"{source}: scenarios[{i}]: is not a mapping; fix: write - name: ... (see config/scenarios/quick.yaml)"
            )
        merged = _merge(defaults, raw)
        own = raw.get("thresholds") or {}
        merged["thresholds"] = {
            k: v for k, v in {**suite_thresholds, **own}.items() if v is not None
        }  # null: not judged
        sweep = merged.pop("sweep", None)
        if sweep is None:
            scenarios.append(_parse_scenario(merged, source, i, None))
            continue
        where = _Checker(source, f"scenarios[{i}] ({raw.get('name')})")
        sweep = where.keys(sweep, {"key", "values"}, "sweep")
        key, values = sweep.get("key"), sweep.get("values")
        if not isinstance(key, str) or not isinstance(values, list) or not values:
            raise where.fail("sweep", f"is {sweep!r}", "write sweep: {key: environment.friction, values: [0.3, 0.8]}")
        for value in values:
            point = copy.deepcopy(merged)
            try:
                _set_path(point, key, value)
            except (KeyError, IndexError, ValueError, TypeError):
                raise where.fail(
                    "sweep.key", f"{key!r} does not lead to a value", "name a key like pushes.0.speed_m_s"
                ) from None
            short = key.split(".")[-1]
            curve, text = _sweep_point(key, value)
            point["name"] = f"{raw.get('name')}[{short}={text}]"
            scenarios.append(_parse_scenario(point, source, i, curve))
    names = [s.name for s in scenarios]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ScenarioError(
            f"{source}: scenario name '{duplicate}' is used twice; fix: give every scenario a unique name"
        )
    description = data.get("description", "")
    return Suite(
        name=str(data.get("suite", Path(source).stem)),
        description=str(description).strip(),
        seed=seed,
        scenarios=tuple(scenarios),
        source=source,
        raw=data,
    )


def load_suite(name_or_path: str | Path, scenarios_dir: Path | None = None) -> Suite:
    """A suite by file path or by name in ``scenarios_dir`` (config/scenarios)."""
    path = Path(name_or_path)
    if not path.is_file() and scenarios_dir is not None:
        candidate = scenarios_dir / f"{name_or_path}.yaml"
        if candidate.is_file():
            path = candidate
    if not path.is_file():
        shipped = (
            sorted(p.stem for p in scenarios_dir.glob("*.yaml")) if scenarios_dir and scenarios_dir.is_dir() else []
        )
        names = f" or a shipped suite ({', '.join(shipped)})" if shipped else ""
        raise ScenarioError(f"{name_or_path}: no such suite; fix: give a YAML file{names}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: is not valid YAML ({str(exc).splitlines()[0]}); fix: correct the file") from None
    return parse_suite(data, str(path))


def select(suite: Suite, names: Sequence[str]) -> Suite:
    """Only the scenarios named (or matched as ``prefix*``); an unknown name is an error."""
    if not names:
        return suite
    chosen = []
    for scenario in suite.scenarios:
        if any(scenario.name == n or (n.endswith("*") and scenario.name.startswith(n[:-1])) for n in names):
            chosen.append(scenario)
    if not chosen:
        raise ScenarioError(
            f"{suite.source}: no scenario matches {', '.join(names)}; "
            f"fix: use names from {', '.join(s.name for s in suite.scenarios)}"
        )
    return Suite(suite.name, suite.description, suite.seed, tuple(chosen), suite.source, suite.raw)
