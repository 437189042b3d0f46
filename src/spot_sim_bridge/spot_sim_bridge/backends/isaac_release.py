"""Which Isaac Sim is installed, and whether this Python can run it: decided without starting Kit.

Importing ``isaacsim`` bootstraps Omniverse Kit (and may ask for the EULA), so the installed
release is read from files only: the pip metadata of the ``isaacsim`` package, else the
``VERSION`` file of a binary install (``<root>/VERSION`` beside ``<root>/python_packages/isaacsim``,
as in Isaac Sim's source tree) or of ``$ISAAC_PATH``.

Each release line is built for one CPython (Isaac Sim's ``repo.toml``): 5.x for 3.11 (v5.1.0
``repo.toml:24``), 6.x for 3.12 (v6.0.1 ``repo.toml:31``, wheels ``cp312``). The backend was checked
against the source of 5.1.0 and 6.0.1 (docs/ISAAC_SIM.md); other 5.x/6.x releases are accepted
and named as unchecked.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PACKAGE_INDEX = "https://pypi.nvidia.com"


@dataclass(frozen=True)
class ReleaseLine:
    """One Isaac Sim major release line this backend supports."""

    major: int
    python: tuple[int, int]  # the only CPython its wheels and binaries are built for
    checked: str  # the release whose source the backend's calls were checked against

    @property
    def python_text(self) -> str:
        return f"{self.python[0]}.{self.python[1]}"

    @property
    def install_command(self) -> str:
        return f"pip install 'isaacsim[all,extscache]=={self.checked}' --extra-index-url {PACKAGE_INDEX}"


LINES: dict[int, ReleaseLine] = {
    5: ReleaseLine(major=5, python=(3, 11), checked="5.1.0"),
    6: ReleaseLine(major=6, python=(3, 12), checked="6.0.1"),
}
DOCS = "docs/ISAAC_SIM.md"


@dataclass(frozen=True)
class IsaacSimInstall:
    """An ``isaacsim`` package this Python can import, and what it says its version is."""

    version: str | None  # as written (pip "5.1.0.0", VERSION file "5.1.0-rc.19"); None: unknown
    found_by: str  # where the version came from (or why it is unknown), for messages

    @property
    def numbers(self) -> tuple[int, int, int] | None:
        return parse_version(self.version) if self.version else None

    @property
    def line(self) -> ReleaseLine | None:
        numbers = self.numbers
        return LINES.get(numbers[0]) if numbers else None


def parse_version(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of "5.1.0", "5.1.0.0" (pip), "6.0.1-rc.7" (VERSION file); None if unreadable."""
    match = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if match is None:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def version_file_candidates(package_dir: Path, environ: dict[str, str] | None = None) -> list[Path]:
    """VERSION files that may describe the ``isaacsim`` package in ``package_dir``, most specific first."""
    env = os.environ if environ is None else environ
    candidates = [package_dir / "VERSION", package_dir.parent.parent / "VERSION"]
    if env.get("ISAAC_PATH"):
        candidates.append(Path(env["ISAAC_PATH"]) / "VERSION")
    return candidates


def find_isaac_sim() -> IsaacSimInstall | None:
    """The ``isaacsim`` this interpreter would import, without importing it; None if there is none."""
    spec = importlib.util.find_spec("isaacsim")
    if spec is None:
        return None
    try:
        return IsaacSimInstall(importlib.metadata.version("isaacsim"), "pip metadata")
    except importlib.metadata.PackageNotFoundError:
        pass
    locations: Sequence[str] = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [str(Path(spec.origin).parent)]
    for location in locations:
        for candidate in version_file_candidates(Path(location)):
            if candidate.is_file():
                first = candidate.read_text(encoding="utf-8", errors="replace").strip().splitlines()
                return IsaacSimInstall(first[0].strip() if first else None, str(candidate))
    return IsaacSimInstall(None, "no pip metadata and no VERSION file next to the isaacsim package")


def python_text(version_info: Sequence[int], executable: str) -> str:
    return f"Python {'.'.join(str(v) for v in version_info[:3])} ({executable})"


def unavailable_reason(
    python: Sequence[int], found: IsaacSimInstall | None, executable: str = sys.executable
) -> str | None:
    """Why backend 'isaac' cannot start in this interpreter (one line with the fix), or None if it can try."""
    here = python_text(python, executable)
    running = tuple(python[:2])
    if found is None:
        fitting = next((line for line in LINES.values() if line.python == running), None)
        if fitting is not None:
            return (
                f"backend 'isaac' needs Isaac Sim, which {here} cannot import; install Isaac Sim {fitting.major}.x "
                f"(it needs an NVIDIA RTX GPU): {fitting.install_command} ({DOCS})"
            )
        return (
            f"backend 'isaac' needs Isaac Sim 5.x on Python 3.11 or 6.x on Python 3.12; this is {here}; create a "
            f"Python 3.11 or 3.12 environment and install Isaac Sim into it, e.g. {LINES[5].install_command} "
            f"({DOCS})"
        )
    numbers = found.numbers
    if numbers is None:  # importable, but no version to check: let Kit's start say what is wrong
        return None
    line = found.line
    if line is None:
        return (
            f"backend 'isaac' supports Isaac Sim 5.x and 6.x but {here} has isaacsim {found.version}; install a "
            f"supported release: {LINES[6].install_command} (Python 3.12) or {LINES[5].install_command} "
            f"(Python 3.11) ({DOCS})"
        )
    if running != line.python:
        return (
            f"backend 'isaac': Isaac Sim {found.version} runs on Python {line.python_text} only; this is {here}; "
            f"run the bridge from the Python {line.python_text} environment Isaac Sim is installed in ({DOCS})"
        )
    return None


def isaac_unavailable_reason() -> str | None:
    """:func:`unavailable_reason` for this interpreter (checked without importing ``isaacsim``)."""
    return unavailable_reason(sys.version_info, find_isaac_sim())


def unchecked_release_note(found: IsaacSimInstall) -> str | None:
    """A note when the installed release is not one whose source the backend was checked against."""
    numbers, line = found.numbers, found.line
    if numbers is None or line is None:
        return None
    if numbers == parse_version(line.checked):
        return None
    return (
        f"Isaac Sim {found.version} is not {line.checked}, the {line.major}.x release this backend was checked "
        f"against: run the conformance suite first ({DOCS})"
    )
