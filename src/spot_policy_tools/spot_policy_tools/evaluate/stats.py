"""Aggregation over trials: means with their spread, and confidence intervals for rates."""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Two-sided 95 % normal quantile.
Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial rate: honest with few trials and at 0 % / 100 %
    (the normal approximation's interval would collapse to a point there)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends (no 0.9999999)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def summarize(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """mean, sample std, min, max, n and the 95 % half-width of the mean (t-free: z * s / sqrt(n))."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None, "ci95": None}
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "min": min(xs),
        "max": max(xs),
        "ci95": Z95 * std / math.sqrt(n) if n > 1 else None,
    }


def rate(flags: Sequence[bool]) -> dict[str, float | int]:
    """A rate over trials with its Wilson 95 % interval."""
    n = len(flags)
    k = sum(1 for f in flags if f)
    low, high = wilson_interval(k, n)
    return {"n": n, "k": k, "rate": k / n if n else 0.0, "ci95_low": low, "ci95_high": high}


def differs(a: dict, b: dict, resolution: float) -> bool:
    """Whether two summaries differ by more than their trial-to-trial spread: |mean a - mean b|
    above twice the standard error of the difference, and above the metric's resolution (which
    stands in for the spread when a side has a single trial or none at all)."""
    if a.get("mean") is None or b.get("mean") is None:
        return False
    delta = abs(a["mean"] - b["mean"])
    se = math.sqrt((a["std"] or 0.0) ** 2 / max(a["n"], 1) + (b["std"] or 0.0) ** 2 / max(b["n"], 1))
    return delta > max(2.0 * se, resolution)


def rates_differ(a: dict, b: dict) -> bool:
    """Two rates whose Wilson 95 % intervals do not overlap."""
    return a["ci95_high"] < b["ci95_low"] or b["ci95_high"] < a["ci95_low"]
