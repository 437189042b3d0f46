"""Per scenario: the aggregate over its trials, each threshold checked, pass or fail; a suite score.

How a threshold reads the trials (written into results.json beside each check):
- ``survival_rate_min``: the fraction of trials that did not fall (with its Wilson 95 % interval);
- safety (``fault_detect_max_s``, ``safe_state_max_s``): every trial must have faulted / reached
  the safe behaviour, and the slowest one counts ("within the bound, every time");
- excursions (``tilt_max_deg``, ``base_height_min_m``) and the push ladder (``push_survived_min_m_s``):
  the worst trial counts;
- performance (tracking, foot slip, action rate, torque): the mean over the trials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from spot_policy_tools.evaluate import stats
from spot_policy_tools.evaluate.metrics import AGGREGATED
from spot_policy_tools.evaluate.scenario import GROUPS, THRESHOLD_KEYS, Scenario

WORST = {"tilt_max_deg", "base_height_min_m", "fault_detect_s", "safe_state_s", "push_survived_m_s"}
EVERY_TRIAL = {"fault_detect_s": "faulted", "safe_state_s": "safe_reached"}


def aggregate(trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Rates and summaries over a scenario's trials."""
    out: dict[str, Any] = {
        "trials": len(trials),
        "survival": stats.rate([bool(t["survived"]) for t in trials]),
        "metrics": {k: stats.summarize([t.get(k) for t in trials]) for k in AGGREGATED},
    }
    if any(t.get("faulted") is not None for t in trials):
        out["faulted"] = stats.rate([bool(t.get("faulted")) for t in trials])
        out["safe_reached"] = stats.rate([bool(t.get("safe_reached")) for t in trials])
    return out


def check(key: str, limit: float, agg: Mapping[str, Any]) -> dict[str, Any]:
    """One threshold against the aggregate."""
    metric, op, unit = THRESHOLD_KEYS[key]
    result: dict[str, Any] = {"threshold": key, "metric": metric, "op": ">=" if op == "min" else "<=", "limit": limit}
    result["unit"] = unit
    if metric == "survived":
        value, how = agg["survival"]["rate"], "rate"
    else:
        summary = agg["metrics"][metric]
        if metric in EVERY_TRIAL:
            every = agg.get(EVERY_TRIAL[metric], {"rate": 0.0})
            if every["rate"] < 1.0:
                result.update(value=None, aggregate="worst", passed=False)
                result["note"] = f"{EVERY_TRIAL[metric]} in {every['k']} of {every['n']} trials"
                return result
        if metric in WORST:
            how = "worst"
            value = summary["min"] if op == "min" else summary["max"]
        else:
            how, value = "mean", summary["mean"]
    result["aggregate"] = how
    result["value"] = value
    if value is None:
        result["passed"] = False
        result["note"] = "no trial gave a value (all fell before it was measured?)"
        return result
    result["passed"] = bool(value >= limit - 1e-12 if op == "min" else value <= limit + 1e-12)
    return result


def judge(scenario: Scenario, trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The scenario's aggregate, its checks and its verdict (None: no thresholds, information only)."""
    agg = aggregate(trials)
    checks = [check(k, v, agg) for k, v in sorted(scenario.thresholds.items())]
    passed = all(c["passed"] for c in checks) if checks else None
    return {
        "aggregate": agg,
        "checks": checks,
        "passed": passed,
        "failed_checks": [c["threshold"] for c in checks if not c["passed"]],
    }


def suite_score(results: Mapping[str, Mapping[str, Any]], groups: Mapping[str, str]) -> dict[str, Any]:
    """Percentage of judged scenarios passed, overall and per group (``groups``: scenario -> group)."""

    def score(names: Sequence[str]) -> dict[str, Any]:
        judged = [n for n in names if results[n]["passed"] is not None]
        passed = [n for n in judged if results[n]["passed"]]
        return {
            "scenarios": len(names),
            "judged": len(judged),
            "passed": len(passed),
            "score": round(100.0 * len(passed) / len(judged), 1) if judged else None,
        }

    overall = score(list(results))
    overall["groups"] = {g: score([n for n in results if groups[n] == g]) for g in GROUPS if g in groups.values()}
    overall["passed_all"] = overall["judged"] == overall["passed"]
    return overall
