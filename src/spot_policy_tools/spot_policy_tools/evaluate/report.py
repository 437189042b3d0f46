"""results.json (versioned, deterministic) and report.html (one self-contained file).

results.json (schema ``spot_policy.evaluate/1``; docs/EVALUATION.md describes every field):

- ``schema``, ``suite`` {name, description, seed, scenarios, trials}, ``complete`` (false after
  Ctrl-C or a trial error), ``definitions`` (every metric), ``threshold_reasons``;
- ``policies``: per policy {label, policy, onnx_sha256, command_ranges, observation_noise,
  control_dt_s, score {score, passed, judged, groups}, scenarios {name: {group, description, curve,
  thresholds, commands, trials [{trial, seed, error, metrics, failed_checks, media}], aggregate,
  checks, passed, failed_checks}}};
- ``comparison`` (two or more policies): per scenario and metric the means, the differences to
  the first policy, whether each exceeds the trial-to-trial spread, and the better policy there.

Nothing in it depends on the machine, the worker count or the wall clock (those go to
``timing.json``), so the same suite, seed and policy give the same file.

report.html opens from disk with no network: SVG charts drawn here, GIFs as data URIs, no script.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spot_policy_tools.evaluate import compare, verdict
from spot_policy_tools.evaluate.metrics import DEFINITIONS
from spot_policy_tools.evaluate.scenario import Suite
from spot_policy_tools.evaluate.thresholds import REASONS

RESULTS_NAME = "results.json"
REPORT_NAME = "report.html"
TIMING_NAME = "timing.json"
PALETTE = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df")


def build_results(
    suite: Suite,
    policies: Sequence[Any],
    results: Sequence[Mapping[str, Any]],
    complete: bool,
    out: Path,
) -> dict[str, Any]:
    """The results document (see the module docstring); ``results`` in suite order."""
    by_key: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in results:
        by_key[(r["label"], r["scenario"])].append(r)
    doc_policies = []
    for info in policies:
        scenarios: dict[str, Any] = {}
        for scenario in suite.scenarios:
            trials = by_key.get((info.label, scenario.name), [])
            if not trials:
                continue
            good = [t for t in trials if t.get("error") is None]
            judged = verdict.judge(scenario, [t["metrics"] for t in good]) if good else None
            entry: dict[str, Any] = {
                "group": scenario.group,
                "description": scenario.description,
                "curve": {"key": scenario.curve[0], "value": scenario.curve[1]} if scenario.curve else None,
                "thresholds": dict(scenario.thresholds),
                "commands": [
                    {
                        "name": c.name,
                        "mode": c.mode,
                        "start_s": c.start_s,
                        "duration_s": c.duration_s,
                        "cmd": list(c.cmd),
                    }
                    for c in scenario.segments(info.ranges)
                ],
                "trials": [
                    {
                        "trial": t["trial"],
                        "seed": t["seed"],
                        "error": t.get("error"),
                        "metrics": t.get("metrics"),
                        "failed_checks": t.get("failed_checks", []),
                        "media": _relative(t.get("media"), out),
                    }
                    for t in trials
                ],
                "planned_trials": scenario.trials,
            }
            if judged is None:
                entry.update(aggregate=None, checks=[], passed=False, failed_checks=["error"])
            else:
                entry.update(judged)
                errors = [t for t in trials if t.get("error")]
                if errors:
                    entry["passed"] = False
                    entry["failed_checks"] = [*entry["failed_checks"], "error"]
            scenarios[scenario.name] = entry
        groups = {name: s["group"] for name, s in scenarios.items()}
        doc_policies.append({**info.public(), "scenarios": scenarios, "score": verdict.suite_score(scenarios, groups)})
    doc: dict[str, Any] = {
        "schema": compare.SCHEMA,
        "suite": {
            "name": suite.name,
            "description": suite.description,
            "seed": suite.seed,
            "scenarios": len(suite.scenarios),
            "trials": suite.trial_count,
        },
        "complete": complete,
        "definitions": DEFINITIONS,
        "threshold_reasons": {k: {"nominal": v, "reason": why} for k, (v, why) in REASONS.items()},
        "policies": doc_policies,
    }
    if len(doc_policies) > 1:
        doc["comparison"] = compare.side_by_side(doc_policies)
    return doc


def _relative(path: str | None, out: Path) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(out.resolve()))
    except ValueError:
        return path


def write_json(doc: Mapping[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(doc, indent=1, sort_keys=False, allow_nan=False) + "\n")
    return path


# ------------------------------------------------------------------------------------ SVG charts


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def line_chart(
    series: Sequence[tuple[str, Sequence[float], Sequence[float], str, bool]],
    title: str,
    x_label: str,
    y_label: str,
    width: int = 360,
    height: int = 200,
    hline: float | None = None,
    y_range: tuple[float, float] | None = None,
) -> str:
    """An SVG line chart: series as (label, xs, ys, colour, dashed); ``y_range`` fixes the y axis."""
    xs = [x for _, sx, sy, _, _ in series for x, y in zip(sx, sy, strict=False) if y is not None]
    ys = [y for _, sx, sy, _, _ in series for y in sy if y is not None]
    if hline is not None:
        ys.append(hline)
    if not xs or not ys:
        return ""
    left, right, top, bottom = 46, 10, 22, 32
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = 0.06 * (y1 - y0)
    y0, y1 = y_range if y_range is not None else (y0 - pad, y1 + pad)

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="chart">',
        f'<text x="{width / 2}" y="14" text-anchor="middle" class="t">{_esc(title)}</text>',
        f'<line x1="{left}" y1="{py(y0)}" x2="{left}" y2="{top}" class="ax"/>',
        f'<line x1="{left}" y1="{py(y0)}" x2="{width - right}" y2="{py(y0)}" class="ax"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        yv = y0 + frac * (y1 - y0)
        parts.append(f'<text x="{left - 4}" y="{py(yv) + 3}" text-anchor="end" class="l">{_fmt(yv, 2)}</text>')
        xv = x0 + frac * (x1 - x0)
        parts.append(f'<text x="{px(xv)}" y="{height - 18}" text-anchor="middle" class="l">{_fmt(xv, 3)}</text>')
    parts.append(
        f'<text x="{(left + width) / 2}" y="{height - 4}" text-anchor="middle" class="l">{_esc(x_label)}</text>'
    )
    parts.append(
        f'<text x="10" y="{(top + height - bottom) / 2}" transform="rotate(-90 10 {(top + height - bottom) / 2})" '
        f'text-anchor="middle" class="l">{_esc(y_label)}</text>'
    )
    if hline is not None:
        parts.append(f'<line x1="{left}" y1="{py(hline)}" x2="{width - right}" y2="{py(hline)}" class="thr"/>')
    for i, (label, sx, sy, colour, dashed) in enumerate(series):
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(sx, sy, strict=False) if y is not None)
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.4"{dash}/>')
        if len(sx) <= 12:
            for x, y in zip(sx, sy, strict=False):
                if y is not None:
                    parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}"/>')
        parts.append(f'<text x="{left + 6 + 90 * i}" y="{top + 10}" class="l" fill="{colour}">{_esc(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _heat_colour(value: float | None, limit: float) -> str:
    if value is None:
        return "#bbbbbb"
    f = max(0.0, min(1.0, value / (2 * limit)))
    if f <= 0.5:  # green -> yellow up to the threshold
        r, g = int(60 + 390 * f), 170
    else:  # yellow -> red beyond it
        r, g = 255, int(170 - 300 * (f - 0.5))
    return f"rgb({min(r, 255)},{max(g, 0)},60)"


def heat_map(cells: Mapping[tuple[float, float, float], float | None], limit: float, title: str, unit: str) -> str:
    """Tracking error over the command grid: rows vx, columns (vy, wz); colour: green below half the
    threshold, yellow at it, red at twice it."""
    vxs = sorted({k[0] for k in cells}, reverse=True)
    cols = sorted({(k[1], k[2]) for k in cells})
    cw, ch, left, top = 58, 26, 58, 40
    width = max(left + cw * len(cols) + 10, 7 * len(title) + 10, 300)
    height = top + ch * len(vxs) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="chart">',
        f'<text x="4" y="14" class="t">{_esc(title)}</text>',
        f'<text x="4" y="{top - 6}" class="l">vx \\ (vy, wz)</text>',
    ]
    for j, (vy, wz) in enumerate(cols):
        parts.append(
            f'<text x="{left + cw * j + cw / 2}" y="{top - 6}" text-anchor="middle" class="l">{vy:g}, {wz:g}</text>'
        )
    for i, vx in enumerate(vxs):
        parts.append(f'<text x="{left - 6}" y="{top + ch * i + ch / 2 + 4}" text-anchor="end" class="l">{vx:g}</text>')
        for j, (vy, wz) in enumerate(cols):
            if (vx, vy, wz) not in cells:
                continue
            value = cells[(vx, vy, wz)]
            x, y = left + cw * j, top + ch * i
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="{_heat_colour(value, limit)}">'
                f"<title>cmd ({vx:g}, {vy:g}, {wz:g}): {_fmt(value)} {unit}</title></rect>"
            )
            label = _fmt(value, 2)
            parts.append(
                f'<text x="{x + cw / 2 - 1}" y="{y + ch / 2 + 3}" text-anchor="middle" class="v">{label}</text>'
            )
    parts.append(
        f'<text x="4" y="{height - 8}" class="l">{_esc(unit)}; threshold {limit:g} (yellow), grey: no value</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def radar(values_by_label: Mapping[str, Mapping[float, float | None]], title: str, unit: str, size: int = 240) -> str:
    """Largest push survived per direction (deg -> m/s), one polygon per policy."""
    all_values = [v for d in values_by_label.values() for v in d.values() if v is not None]
    vmax = max([*all_values, 0.1])
    c, r = size / 2, size / 2 - 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size + 20}" class="chart">',
        f'<text x="{c}" y="14" text-anchor="middle" class="t">{_esc(title)}</text>',
    ]
    for frac in (0.5, 1.0):
        parts.append(f'<circle cx="{c}" cy="{c + 10}" r="{r * frac}" class="grid"/>')
        parts.append(f'<text x="{c + 3}" y="{c + 10 - r * frac + 10}" class="l">{vmax * frac:.2g}</text>')
    directions = sorted({d for values in values_by_label.values() for d in values})
    for d in directions:
        a = math.radians(d)
        x, y = c + r * math.cos(a), c + 10 - r * math.sin(a)
        parts.append(f'<line x1="{c}" y1="{c + 10}" x2="{x:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{c + (r + 14) * math.cos(a):.1f}" y="{c + 14 - (r + 14) * math.sin(a):.1f}" '
                     f'text-anchor="middle" class="l">{d:g}°</text>')  # fmt: skip
    for i, (label, values) in enumerate(values_by_label.items()):
        colour = PALETTE[i % len(PALETTE)]
        pts = []
        for d in directions:
            v = values.get(d) or 0.0
            a = math.radians(d)
            pts.append(f"{c + r * v / vmax * math.cos(a):.1f},{c + 10 - r * v / vmax * math.sin(a):.1f}")
        parts.append(f'<polygon points="{" ".join(pts)}" fill="{colour}" fill-opacity="0.15" stroke="{colour}"/>')
        parts.append(f'<text x="6" y="{size + 14 - 12 * i}" class="l" fill="{colour}">{_esc(label)} ({unit})</text>')
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------------ the page

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1f2328;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #d0d7de;padding:3px 7px;text-align:right}
th{background:#f6f8fa}td{white-space:nowrap}td.n,th.n{text-align:left}td.fail{white-space:normal;min-width:200px}.pass{background:#dafbe1}.fail{background:#ffebe9}
.info{background:#f6f8fa}.better{font-weight:bold}.sig{color:#8250df}.small{font-size:12px;color:#57606a}
.chart{background:#fff;border:1px solid #eaeef2;margin:4px}.t{font-size:12px;font-weight:600}.l{font-size:10px}
.v{font-size:10px}.ax{stroke:#57606a}.thr{stroke:#d1242f;stroke-dasharray:3 3}.grid{stroke:#d0d7de;fill:none}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.flex{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start}figure{margin:4px}figcaption{font-size:12px}
"""

KEY_METRICS = (
    ("tracking_vxy_worst_m_s", "vxy err worst"),
    ("tracking_wz_worst_rad_s", "wz err worst"),
    ("tilt_max_deg", "tilt max °"),
    ("foot_slip_m_s", "slip m/s"),
    ("action_rate", "action rate"),
    ("torque_rms_nm", "τ rms"),
    ("cost_of_transport", "CoT"),
)


def _verdict_cell(entry: Mapping[str, Any]) -> str:
    passed = entry.get("passed")
    if passed is None:
        return '<td class="info n">info</td>'
    failed = ", ".join(entry.get("failed_checks", []))
    return (
        '<td class="pass n">PASS</td>'
        if passed
        else f'<td class="fail n">FAIL <span class="small">{_esc(failed)}</span></td>'
    )


def _mean(entry: Mapping[str, Any] | None, metric: str) -> float | None:
    if not entry or not entry.get("aggregate"):
        return None
    if metric == "survived":
        return entry["aggregate"]["survival"]["rate"]
    return entry["aggregate"]["metrics"].get(metric, {}).get("mean")


def scorecard(doc: Mapping[str, Any]) -> str:
    policies = doc["policies"]
    comparison = doc.get("comparison", {}).get("scenarios", {})
    head = '<tr><th class="n">scenario</th><th class="n">group</th>'
    for p in policies:
        head += f'<th class="n">{_esc(p["label"])}: verdict</th><th>survival [95 % CI]</th>'
        head += "".join(f"<th>{_esc(label)}</th>" for _, label in KEY_METRICS)
    head += "</tr>"
    rows = []
    names = list(policies[0]["scenarios"])
    for name in names:
        cells = f'<td class="n">{_esc(name)}</td><td class="n">{_esc(policies[0]["scenarios"][name]["group"])}</td>'
        for p in policies:
            entry = p["scenarios"].get(name)
            if entry is None:
                cells += '<td class="n">–</td>' + "<td></td>" * (1 + len(KEY_METRICS))
                continue
            cells += _verdict_cell(entry)
            agg = entry.get("aggregate")
            if agg:
                s = agg["survival"]
                cells += f"<td>{s['k']}/{s['n']} [{s['ci95_low']:.2f}, {s['ci95_high']:.2f}]</td>"
            else:
                cells += "<td>error</td>"
            rows_cmp = comparison.get(name, {}).get("metrics", {})
            for metric, _ in KEY_METRICS:
                value = _mean(entry, metric)
                spread = (agg or {}).get("metrics", {}).get(metric, {}).get("std") if agg else None
                text = _fmt(value) + (f' <span class="small">±{_fmt(spread, 2)}</span>' if spread else "")
                cls = ""
                cmp_row = rows_cmp.get(metric)
                if cmp_row and cmp_row.get("better") == p["label"]:
                    cls = ' class="better"'
                    text += " ▲"
                if p is not policies[0] and cmp_row:
                    delta = cmp_row["delta"].get(p["label"], {})
                    if delta.get("significant"):
                        text += f' <span class="sig">(Δ {_fmt(delta["value"], 2)})</span>'
                cells += f"<td{cls}>{text}</td>"
        rows.append(f"<tr>{cells}</tr>")
    return f'<table id="scorecard">{head}{"".join(rows)}</table>'


def _grid_cells(entry: Mapping[str, Any], key: str) -> dict[tuple[float, float, float], float | None]:
    acc: dict[tuple[float, float, float], list[float]] = defaultdict(list)
    for trial in entry["trials"]:
        for seg in (trial.get("metrics") or {}).get("segments", []):
            if seg.get("grid"):
                cmd = tuple(round(v, 3) for v in seg["cmd"])
                if seg.get(key) is not None:
                    acc[cmd].append(seg[key])  # type: ignore[index]
                else:
                    acc.setdefault(cmd, [])  # type: ignore[arg-type]
    return {k: (sum(v) / len(v) if v else None) for k, v in acc.items()}


def heat_maps(doc: Mapping[str, Any]) -> str:
    out = []
    for p in doc["policies"]:
        for name, entry in p["scenarios"].items():
            if not any(c["name"].startswith("grid_") for c in entry["commands"]):
                continue
            limit_v = entry["thresholds"].get("tracking_vxy_max_m_s", REASONS["tracking_vxy_max_m_s"][0])
            limit_w = entry["thresholds"].get("tracking_wz_max_rad_s", REASONS["tracking_wz_max_rad_s"][0])
            out.append(heat_map(_grid_cells(entry, "err_vxy"), limit_v, f"{p['label']}: {name}: vxy error", "m/s"))
            out.append(heat_map(_grid_cells(entry, "err_wz"), limit_w, f"{p['label']}: {name}: wz error", "rad/s"))
    return '<div class="flex">' + "".join(out) + "</div>" if out else "<p>No scenario with a command grid.</p>"


def robustness_curves(doc: Mapping[str, Any]) -> str:
    charts = []
    curves: dict[tuple[str, str], dict[str, list[tuple[float, str]]]] = defaultdict(lambda: defaultdict(list))
    for p in doc["policies"]:
        for name, entry in p["scenarios"].items():
            if entry.get("curve") and entry["curve"]["value"] is not None:
                base = name.split("[")[0]
                curves[(base, entry["curve"]["key"])][p["label"]].append((entry["curve"]["value"], name))
    for (base, key), by_label in sorted(curves.items()):
        any_entry = doc["policies"][0]["scenarios"][next(iter(by_label.values()))[0][1]]
        if any_entry["group"] == "push" and key.endswith("direction_deg"):
            values = {
                label: {v: _mean(doc["policies"][i]["scenarios"][n], "push_survived_m_s") for v, n in points}
                for i, (label, points) in enumerate(by_label.items())
            }
            charts.append(radar(values, f"{base}: largest push survived", "m/s", size=260))
            continue
        short = key.split(".")[-1]
        for metric, label in (("tracking_vxy_mean_m_s", "vxy error m/s"), ("survived", "survival")):
            series = []
            for i, (policy_label, points) in enumerate(by_label.items()):
                points = sorted(points)
                policy = next(pp for pp in doc["policies"] if pp["label"] == policy_label)
                ys = [_mean(policy["scenarios"][n], metric) for _, n in points]
                series.append((policy_label, [v for v, _ in points], ys, PALETTE[i % len(PALETTE)], False))
            fixed = (0.0, 1.05) if metric == "survived" else None
            charts.append(line_chart(series, f"{base}: {label}", short, label, width=380, y_range=fixed))
    return '<div class="flex">' + "".join(charts) + "</div>" if charts else "<p>No sweep in this suite.</p>"


def scenario_plots(doc: Mapping[str, Any], traces: Mapping[tuple[str, str], Mapping[str, list[float]]]) -> str:
    blocks = []
    for name in doc["policies"][0]["scenarios"]:
        charts = []
        for axis, unit in (("vx", "m/s"), ("vy", "m/s"), ("wz", "rad/s"), ("height", "m")):
            series = []
            for i, p in enumerate(doc["policies"]):
                tr = traces.get((p["label"], name))
                if not tr:
                    continue
                colour = PALETTE[i % len(PALETTE)]
                series.append((f"{p['label']} trial 0", tr["t"], tr[axis], colour, False))
                if axis != "height" and i == 0:
                    series.append(("commanded", tr["t"], tr[f"cmd_{axis}"], "#000000", True))
            hline = 0.25 if axis == "height" else None
            chart = line_chart(series, f"{axis}", "trial time s", unit, width=300, height=170, hline=hline)
            if chart:
                charts.append(chart)
        media = []
        for p in doc["policies"]:
            entry = p["scenarios"].get(name)
            for trial in (entry or {}).get("trials", []):
                if trial.get("media_data"):
                    media.append(
                        f'<figure><img src="data:image/gif;base64,{trial["media_data"]}" width="256" height="192" '
                        f'alt="failed trial"><figcaption>{_esc(p["label"])} trial {trial["trial"]}: '
                        f"{_esc(', '.join(trial.get('failed_checks') or []) or trial.get('error') or '')}"
                        "</figcaption></figure>"
                    )
        description = doc["policies"][0]["scenarios"][name].get("description", "")
        blocks.append(
            f'<h3 id="s-{_esc(name)}">{_esc(name)}</h3><p class="small">{_esc(description)}</p>'
            f'<div class="flex">{"".join(charts)}{"".join(media)}</div>'
        )
    return "".join(blocks)


def checks_table(doc: Mapping[str, Any]) -> str:
    rows = []
    for p in doc["policies"]:
        for name, entry in p["scenarios"].items():
            for c in entry.get("checks", []):
                cls = "pass" if c["passed"] else "fail"
                rows.append(
                    f'<tr><td class="n">{_esc(p["label"])}</td><td class="n">{_esc(name)}</td>'
                    f'<td class="n">{_esc(c["threshold"])}</td><td>{_esc(c.get("aggregate", ""))}</td>'
                    f"<td>{_fmt(c.get('value'))}</td><td>{_esc(c['op'])} {_fmt(c['limit'])}</td>"
                    f'<td class="{cls} n">{"pass" if c["passed"] else "fail"} {_esc(c.get("note", ""))}</td></tr>'
                )
    head = "<tr><th class='n'>policy</th><th class='n'>scenario</th><th class='n'>threshold</th><th>over trials</th>"
    head += "<th>value</th><th>limit</th><th class='n'>result</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def render_html(
    doc: Mapping[str, Any],
    traces: Mapping[tuple[str, str], Mapping[str, list[float]]],
    out: Path,
    regressions: Mapping[str, Any] | None = None,
) -> str:
    """The page; GIFs of failed trials are read from ``out`` and inlined."""
    doc = json.loads(json.dumps(doc))  # a copy to attach the inlined media to
    for p in doc["policies"]:
        for entry in p["scenarios"].values():
            for trial in entry["trials"]:
                if trial.get("media") and (out / trial["media"]).is_file():
                    trial["media_data"] = base64.b64encode((out / trial["media"]).read_bytes()).decode()
    suite = doc["suite"]
    badges = []
    for _i, p in enumerate(doc["policies"]):
        score = p["score"]
        colour = "#1a7f37" if score["passed_all"] else "#d1242f"
        badges.append(
            f'<p><span class="badge" style="background:{colour}">{_esc(p["label"])}: '
            f"{score['passed']}/{score['judged']} "
            f"passed ({_fmt(score['score'])} %)</span> <code>{_esc(p['policy'])}</code> "
            f'<span class="small">ONNX sha256 {p["onnx_sha256"][:16]}…</span> '
            + " ".join(
                f'<span class="small">{_esc(g)} {s["passed"]}/{s["judged"]}</span>' for g, s in score["groups"].items()
            )
            + "</p>"
        )
    reg_html = ""
    if regressions is not None:
        items = "".join(
            f"<li><b>{_esc(r['scenario'])}</b>: {_esc('; '.join(r['reasons']))}</li>" for r in regressions["regressed"]
        )
        reg_html = "<h2>Against the baseline</h2>" + (
            f"<ul>{items}</ul>" if items else "<p>No scenario regressed beyond tolerance.</p>"
        )
    incomplete = "" if doc["complete"] else "<p class='fail'>Incomplete: stopped early or a trial failed to run.</p>"
    definitions = "".join(
        f"<tr><td class='n'>{_esc(k)}</td><td class='n'>{_esc(v)}</td></tr>" for k, v in doc["definitions"].items()
    )
    reasons = "".join(
        f"<tr><td class='n'>{_esc(k)}</td><td>{_fmt(v['nominal'])}</td><td class='n'>{_esc(v['reason'])}</td></tr>"
        for k, v in doc["threshold_reasons"].items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>spot-policy evaluate: {_esc(suite["name"])}</title>
<style>{CSS}</style></head><body>
<h1>spot-policy evaluate — suite <code>{_esc(suite["name"])}</code></h1>
<p class="small">{_esc(suite["description"])} Seed {suite["seed"]}, {suite["scenarios"]} scenarios,
{suite["trials"]} trials per policy.
Every metric is measured on the simulator's ground truth; definitions and threshold reasons at the end.</p>
{incomplete}{"".join(badges)}{reg_html}
<h2>Scorecard</h2>
<p class="small">Means over trials (± sample standard deviation). With several policies, ▲ marks the better one and
Δ the difference to {_esc(doc["policies"][0]["label"])}, only where it exceeds the trial-to-trial spread.</p>
{scorecard(doc)}
<h2>Tracking error over the command grid</h2>{heat_maps(doc)}
<h2>Robustness curves</h2>{robustness_curves(doc)}
<h2>Checks</h2>{checks_table(doc)}
<h2>Scenarios</h2>{scenario_plots(doc, traces)}
<h2>Definitions</h2><table>{definitions}</table>
<h2>Why the thresholds are where they are</h2>
<table><tr><th class="n">threshold</th><th>nominal</th><th class="n">reason</th></tr>{reasons}</table>
</body></html>
"""
