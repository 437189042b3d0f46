"""``spot-policy evaluate``: arguments, the run, the files, the exit status.

Exit status: 0 finished (with ``--baseline``: nothing regressed; with ``--strict``: every judged
scenario passed); 1 a regression against the baseline (listed) or, with ``--strict``, a failed
scenario; 2 bad input (suite, policy, baseline, output folder); 130 stopped by Ctrl-C (the
finished trials are written).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from spot_policy.core import paths
from spot_policy.core.errors import PolicyLoadError

EXAMPLES = """\
examples:
  spot-policy evaluate --policy logs/rsl_rl/spot_flat/2026-11-20_10-00-00 --suite standard --out runs/eval-a
  spot-policy evaluate --policy A --policy B --suite standard --out runs/a-vs-b      # side by side
  spot-policy evaluate --policy A --suite quick --baseline runs/eval-a/results.json   # CI gate: exit 1 on regression
  spot-policy evaluate --suite quick --workers 2                                      # parallel on this machine
  spot-policy evaluate --suite quick --ray auto                                       # trials as Ray tasks
  spot-policy evaluate --suite standard --scenario 'push*' --out runs/push            # some scenarios only
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy",
        action="append",
        default=None,
        help="run folder, policy.onnx or shipped policy name; repeat to compare policies (default: spot_flat_mjx)",
    )
    parser.add_argument("--suite", default="quick", help="scenario suite: a YAML file or a name in config/scenarios")
    parser.add_argument("--scenario", action="append", default=[], help="only this scenario (repeatable; 'prefix*')")
    parser.add_argument("--out", type=Path, default=None, help="folder to write (default: runs/eval-<time>)")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="results.json to compare with: exit 1 on regression"
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.10, help="regression tolerance as a fraction of each threshold (0.10)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="trials playing at once on this machine (about one core each); with 2 or more, as many again "
        "start up meanwhile and wait standing at sim time 0 (results do not depend on it)",
    )
    parser.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="run trials as Ray tasks on the running cluster at host:port ('auto': the one on this machine); "
        "Ray 2.60's clusters want RAY_AUTH_MODE=token from a client given their address",
    )
    parser.add_argument("--seed", type=int, default=None, help="override the suite's seed")
    parser.add_argument("--no-media", action="store_true", help="no GIF of failed trials")
    parser.add_argument(
        "--separate-processes",
        action="store_true",
        help="run each trial's sim bridge and policy node in processes of their own, as sim.launch.py does "
        "(default: composed in one process, ~20%% faster; the results are the same)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when any judged scenario fails")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def _labels(policies: list[str]) -> list[str]:
    labels: list[str] = []
    for given in policies:
        path = Path(given)
        base = path.parent.parent.name if path.suffix == ".onnx" else (path.name or given)
        label, k = base, 2
        while label in labels:
            label, k = f"{base}-{k}", k + 1
        labels.append(label)
    return labels


def _fail(message: str) -> int:
    print(f"spot-policy evaluate: error: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    import dataclasses

    from spot_policy_tools.evaluate import compare, report, runner
    from spot_policy_tools.evaluate.scenario import ScenarioError, load_suite, select

    policies = args.policy or ["spot_flat_mjx"]
    try:
        suite = select(load_suite(args.suite, paths.config_dir() / "scenarios"), args.scenario)
    except ScenarioError as exc:
        return _fail(str(exc))
    if args.seed is not None:
        suite = dataclasses.replace(suite, seed=args.seed)
    if args.workers < 1:
        return _fail(f"--workers is {args.workers}; fix: give 1 or more")
    baseline = None
    if args.baseline is not None:
        try:
            baseline = compare.check_results(json.loads(args.baseline.read_text()), str(args.baseline))
        except (OSError, ValueError) as exc:
            text = str(exc) if isinstance(exc, compare.ResultsError) else f"{args.baseline}: cannot read ({exc})"
            return _fail(f"{text}; fix: give the results.json of an earlier evaluation" if "fix:" not in text else text)
    try:
        infos = [runner.policy_info(given, label) for given, label in zip(policies, _labels(policies), strict=True)]
    except PolicyLoadError as exc:
        return _fail(str(exc))
    out = (args.out or Path("runs") / f"eval-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    if out.exists() and any(out.iterdir()):
        return _fail(f"{out} is not empty; fix: choose another --out")
    out.mkdir(parents=True, exist_ok=True)

    specs = runner.trial_specs(suite, infos, out, not args.no_media, separate_processes=args.separate_processes)
    total_sim = sum(s.scenario.duration_s() for s in specs)
    where = f"Ray at {args.ray}" if args.ray else f"{args.workers} worker{'s' if args.workers > 1 else ''}"
    print(
        f"spot-policy evaluate: suite '{suite.name}' ({len(suite.scenarios)} scenarios, {len(specs)} trials, "
        f"{total_sim:.0f} sim s), policies {', '.join(i.label for i in infos)}, {where}; output {out}",
        file=sys.stderr,
    )
    progress = runner.Progress(len(specs), total_sim, enabled=not args.quiet)
    stop = threading.Event()

    def on_sigint(_sig: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nevaluate: Ctrl-C: finishing the running trials, keeping the finished ones "
              "(Ctrl-C again to abandon)", file=sys.stderr)  # fmt: skip

    previous = signal.signal(signal.SIGINT, on_sigint)
    started = time.monotonic()

    def done(result: dict) -> None:
        progress.trial_done(f"{result['label']}/{result['scenario']}#{result['trial']}", result.get("sim_s", 0.0),
                            result.get("error") is None and not result.get("failed_checks"))  # fmt: skip

    try:
        if args.ray:
            results, interrupted = runner.run_ray(specs, args.ray, done, stop)
        else:
            results, interrupted = runner.run_local(specs, args.workers, done, stop)
    except RuntimeError as exc:
        return _fail(str(exc))
    finally:
        signal.signal(signal.SIGINT, previous)
        progress.close()
    wall = time.monotonic() - started
    results = runner.ordered(results, specs)
    complete = not interrupted and len(results) == len(specs) and all(r.get("error") is None for r in results)
    doc = report.build_results(suite, infos, results, complete, out)
    report.write_json(doc, out / report.RESULTS_NAME)
    sim_done = sum(r.get("sim_s", 0.0) for r in results)
    timing = {
        "wall_s": round(wall, 2),
        "sim_s": sim_done,
        "sim_s_per_wall_s": round(sim_done / wall, 3) if wall > 0 else None,
        "workers": args.workers if not args.ray else f"ray:{args.ray}",
        "trials": [
            {
                k: r.get(k)
                for k in (
                    "label",
                    "scenario",
                    "trial",
                    "wall_s",
                    "slot_wait_s",
                    "play_wall_s",
                    "sim_s",
                    "timing",
                    "error",
                    "attempts",
                    "retried_after",
                )
            }
            | _play_span(r, None if args.ray else started)
            for r in results
        ],
    }
    (out / report.TIMING_NAME).write_text(json.dumps(timing, indent=1) + "\n")
    regressions = compare.regressions(baseline, doc, args.tolerance) if baseline is not None else None
    traces = {(r["label"], r["scenario"]): r["trace"] for r in results if r.get("trace") and r["trial"] == 0}
    (out / report.REPORT_NAME).write_text(report.render_html(doc, traces, out, regressions))

    for p in doc["policies"]:
        score = p["score"]
        print(f"{p['label']}: {score['passed']}/{score['judged']} scenarios passed ({score['score']} %)")
        for name, entry in p["scenarios"].items():
            if entry["passed"] is False:
                print(f"  FAIL {name}: {', '.join(entry['failed_checks'])}")
    print(f"results: {out / report.RESULTS_NAME}, report: {out / report.REPORT_NAME} ({wall:.0f} s)")
    if interrupted:
        print(f"evaluate: stopped early: {len(results)} of {len(specs)} trials written", file=sys.stderr)
        return 130
    if regressions is not None:
        if regressions["regressed"]:
            print(f"regressed against {args.baseline}:")
            for r in regressions["regressed"]:
                print(f"  {r['scenario']}: {'; '.join(r['reasons'])}")
            return 1
        print(f"no regression against {args.baseline}")
    if args.strict and not all(p["score"]["passed_all"] for p in doc["policies"]):
        return 1
    return 0


def _play_span(result: dict, started: float | None) -> dict:
    """When the trial played, in s since the evaluation started (local runs: one clock), as
    ``play_span_s``; nothing for a Ray run or a trial that did not play."""
    span = result.get("play_span")
    if started is None or not span:
        return {}
    return {"play_span_s": [round(span[0] - started, 3), round(span[1] - started, 3)]}
