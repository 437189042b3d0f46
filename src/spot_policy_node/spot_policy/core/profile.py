"""Command profiles: timed segments of mode + cmd_vel that script a run (YAML in config/profiles)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

MODES = ("stand", "walk", "stop")
#: The marker a profile player sends after the last segment.
END_MARKER = "end"
_SEGMENT_KEYS = {"name", "mode", "duration", "cmd_vel", "push"}
_PROFILE_KEYS = {"name", "settle_s", "segments"}


class ProfileError(ValueError):
    """A profile file that cannot be used, with the file and the fix in one line."""


@dataclass(frozen=True)
class Segment:
    name: str
    mode: str
    start: float
    duration: float
    cmd_vel: tuple[float, float, float]
    push: bool = False  # at the segment's start, call the sim bridge's ~/push (a base velocity kick)

    @property
    def end(self) -> float:
        return self.start + self.duration

    @property
    def moving(self) -> bool:
        return self.mode == "walk" and any(v != 0.0 for v in self.cmd_vel)


@dataclass(frozen=True)
class Profile:
    name: str
    settle_s: float
    segments: tuple[Segment, ...]
    source: str = ""

    @property
    def duration(self) -> float:
        return self.segments[-1].end if self.segments else 0.0

    def at(self, t: float) -> Segment | None:
        """The segment running at time ``t`` since the profile started (None after the end)."""
        return next((s for s in self.segments if s.start <= t < s.end), None)


def parse_profile(data: object, source: str = "<profile>") -> Profile:
    def fail(problem: str, fix: str) -> ProfileError:
        return ProfileError(f"{source}: {problem}; fix: {fix}")

    if not isinstance(data, dict):
        raise fail("is not a mapping", "write 'name:', 'segments:' (see config/profiles/default.yaml)")
    unknown = sorted(set(data) - _PROFILE_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}", f"use only {', '.join(sorted(_PROFILE_KEYS))}")
    raw_segments = data.get("segments")
    if not isinstance(raw_segments, list) or not raw_segments:
        raise fail("has no segments", "add a list under 'segments:'")
    segments: list[Segment] = []
    t = 0.0
    for i, seg in enumerate(raw_segments):
        where = f"segment {i + 1}"
        if not isinstance(seg, dict):
            raise fail(f"{where} is not a mapping", "write {name: ..., mode: ..., duration: ...}")
        bad = sorted(set(seg) - _SEGMENT_KEYS)
        if bad:
            raise fail(f"{where} has unknown key(s) {', '.join(bad)}", f"use {', '.join(sorted(_SEGMENT_KEYS))}")
        mode = seg.get("mode")
        if mode not in MODES:
            raise fail(f"{where} has mode {mode!r}", f"use one of {', '.join(MODES)}")
        try:
            duration = float(seg.get("duration"))
        except (TypeError, ValueError):
            raise fail(f"{where} has duration {seg.get('duration')!r}", "give seconds, e.g. duration: 2.0") from None
        if not duration > 0:
            raise fail(f"{where} has duration {duration}", "use a positive number of seconds")
        cmd = seg.get("cmd_vel", [0.0, 0.0, 0.0])
        try:
            vx, vy, wz = (float(v) for v in cmd)
        except (TypeError, ValueError):
            raise fail(f"{where} has cmd_vel {cmd!r}", "write [vx, vy, wz]") from None
        if mode != "walk" and any((vx, vy, wz)):
            raise fail(f"{where} commands motion in mode {mode}", "use mode: walk for a non-zero cmd_vel")
        name = seg.get("name", f"segment_{i + 1}")
        if not isinstance(name, str):
            raise fail(
                f"{where} has name {name!r} (YAML reads on/off/yes/no and numbers as such)", "quote it: name: 'off'"
            )
        push = seg.get("push", False)
        if not isinstance(push, bool):
            raise fail(f"{where} has push {push!r}", "write push: true to kick the base at the segment start")
        segments.append(Segment(name, mode, t, duration, (vx, vy, wz), push))
        t += duration
    settle = float(data.get("settle_s", 1.0))
    return Profile(str(data.get("name", Path(source).stem)), settle, tuple(segments), source)


def load_profile(name_or_path: str | Path, profiles_dir: Path | None = None) -> Profile:
    """A profile by file path or by name in ``profiles_dir`` (config/profiles)."""
    path = Path(name_or_path)
    if not path.is_file() and profiles_dir is not None:
        for candidate in (profiles_dir / f"{name_or_path}.yaml", profiles_dir / str(name_or_path)):
            if candidate.is_file():
                path = candidate
                break
    if not path.is_file():
        shipped = sorted(p.stem for p in profiles_dir.glob("*.yaml")) if profiles_dir and profiles_dir.is_dir() else []
        names = f" or a shipped profile ({', '.join(shipped)})" if shipped else ""
        raise ProfileError(f"{name_or_path}: no such profile; fix: give a YAML file{names}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: is not valid YAML ({str(exc).splitlines()[0]}); fix: correct the file") from exc
    return parse_profile(data, str(path))
