"""Comparisons: against a baseline results.json (the CI gate) and between policies side by side.

A scenario regressed when, against the baseline's result of the same scenario:
- it passed there and fails now; or
- its survival rate fell and the two Wilson 95 % intervals do not overlap; or
- a thresholded metric got worse by more than the tolerance: the larger of ``rel_tolerance``
  times the threshold, twice the standard error of the difference of the two means (the
  trial-to-trial spread) and the metric's resolution.
Scenarios only one side has are listed, never counted as regressions.

Side by side, a metric differs between two policies only where the difference of the means
exceeds the trial-to-trial spread (:func:`spot_policy_tools.evaluate.stats.differs`); only then
does the report say which one is better there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from spot_policy_tools.evaluate import stats
from spot_policy_tools.evaluate.metrics import AGGREGATED, BETTER
from spot_policy_tools.evaluate.scenario import THRESHOLD_KEYS

SCHEMA = "spot_policy.evaluate/1"
DEFAULT_REL_TOLERANCE = 0.10


class ResultsError(ValueError):
    """A results.json that cannot be compared (missing, not JSON, another schema)."""


def check_results(data: Any, source: str) -> Mapping[str, Any]:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ResultsError(
            f"{source}: schema is {found!r}, expected {SCHEMA!r}; "
            "fix: give a results.json written by spot-policy evaluate"
        )
    if not data.get("policies"):
        raise ResultsError(f"{source}: has no policies; fix: give a results.json of a finished evaluation")
    return data


def regressions(
    baseline: Mapping[str, Any], current: Mapping[str, Any], rel_tolerance: float = DEFAULT_REL_TOLERANCE
) -> dict[str, Any]:
    """Scenarios of ``current``'s first policy that regressed against ``baseline``'s first policy."""
    base = baseline["policies"][0]["scenarios"]
    now = current["policies"][0]["scenarios"]
    out: list[dict[str, Any]] = []
    for name, cur in now.items():
        old = base.get(name)
        if old is None:
            continue
        reasons: list[str] = []
        if old.get("passed") and cur.get("passed") is False:
            reasons.append(f"passed in the baseline, fails now ({', '.join(cur.get('failed_checks', []))})")
        s_old, s_new = old["aggregate"]["survival"], cur["aggregate"]["survival"]
        if s_new["rate"] < s_old["rate"] and stats.rates_differ(s_old, s_new):
            reasons.append(f"survival {s_old['rate']:.0%} -> {s_new['rate']:.0%} (95 % intervals apart)")
        for key, limit in sorted(cur.get("thresholds", {}).items()):
            metric, op, unit = THRESHOLD_KEYS[key]
            if metric == "survived":
                continue
            a, b = old["aggregate"]["metrics"].get(metric), cur["aggregate"]["metrics"].get(metric)
            if not a or not b or a.get("mean") is None or b.get("mean") is None:
                continue
            worse = (b["mean"] - a["mean"]) if op == "max" else (a["mean"] - b["mean"])
            se = math.sqrt((a["std"] or 0.0) ** 2 / max(a["n"], 1) + (b["std"] or 0.0) ** 2 / max(b["n"], 1))
            tolerance = max(rel_tolerance * abs(limit), 2.0 * se, AGGREGATED.get(metric, 0.0))
            if worse > tolerance:
                reasons.append(
                    f"{metric} {a['mean']:.4g} -> {b['mean']:.4g} {unit} (worse by more than {tolerance:.3g})"
                )
        if reasons:
            out.append({"scenario": name, "reasons": reasons})
    return {
        "regressed": out,
        "only_in_baseline": sorted(set(base) - set(now)),
        "only_now": sorted(set(now) - set(base)),
        "rel_tolerance": rel_tolerance,
    }


def side_by_side(policies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per scenario and metric: each policy's mean, the difference to the first policy, and the
    better one where the difference exceeds the trial-to-trial spread."""
    labels = [p["label"] for p in policies]
    first = policies[0]["scenarios"]
    table: dict[str, Any] = {}
    wins = {label: 0 for label in labels}
    for name in first:
        if not all(name in p["scenarios"] for p in policies):
            continue
        rows: dict[str, Any] = {}
        verdicts = {p["label"]: p["scenarios"][name].get("passed") for p in policies}
        survival = {p["label"]: p["scenarios"][name]["aggregate"]["survival"] for p in policies}
        for metric, resolution in AGGREGATED.items():
            summaries = {p["label"]: p["scenarios"][name]["aggregate"]["metrics"][metric] for p in policies}
            if all(s["mean"] is None for s in summaries.values()):
                continue
            ref = summaries[labels[0]]
            row: dict[str, Any] = {"mean": {k: s["mean"] for k, s in summaries.items()}, "delta": {}, "better": None}
            for label in labels[1:]:
                s = summaries[label]
                delta = None if s["mean"] is None or ref["mean"] is None else s["mean"] - ref["mean"]
                significant = stats.differs(ref, s, resolution)
                row["delta"][label] = {"value": delta, "significant": significant}
                direction = BETTER.get(metric)
                if significant and direction and delta is not None:
                    row["better"] = labels[0] if (delta > 0) == (direction == "lower") else label
            rows[metric] = row
            if row["better"]:
                wins[row["better"]] += 1
        survival_better = None
        if len(labels) > 1 and stats.rates_differ(survival[labels[0]], survival[labels[1]]):
            survival_better = max(labels[:2], key=lambda k: survival[k]["rate"])
        table[name] = {
            "passed": verdicts,
            "survival": {k: v["rate"] for k, v in survival.items()},
            "survival_better": survival_better,
            "metrics": rows,
        }
    return {"labels": labels, "scenarios": table, "significant_wins": wins}
