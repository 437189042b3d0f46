"""Rolling figures for diagnostics and benchmarks (median, p99) over a bounded window."""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.ma  # numpy imports it on the first percentile: at import here, not on a control thread


class Rolling:
    """The last ``size`` samples; percentiles are computed on demand, never in the hot path."""

    def __init__(self, size: int = 1000) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(value)

    def __len__(self) -> int:
        return len(self._values)

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.fromiter(self._values, float), q)) if self._values else float("nan")

    @property
    def median(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)


def summarize(samples: list[float] | np.ndarray) -> dict[str, float]:
    """Median, p99, mean and count of a sample list (for benchmark tables)."""
    arr = np.asarray(samples, dtype=float)
    if arr.size == 0:
        return {"median": float("nan"), "p99": float("nan"), "mean": float("nan"), "n": 0}
    return {
        "median": float(np.median(arr)),
        "p99": float(np.percentile(arr, 99)),
        "mean": float(arr.mean()),
        "n": int(arr.size),
    }
