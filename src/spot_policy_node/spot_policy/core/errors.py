"""The one error type a user sees when a policy cannot be loaded."""

from __future__ import annotations

from pathlib import Path


class PolicyLoadError(Exception):
    """One line: the file, what is wrong with it, and how to fix it."""

    def __init__(self, file: Path | str, problem: str, fix: str) -> None:
        self.file = str(file)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.file}: {problem}; fix: {fix}")
