"""Schedules a suite's trials (per policy) over local worker processes or Ray tasks, shows progress,
stops cleanly on Ctrl-C, and assembles the results.

Each trial is independent (own ROS domain, own processes, own seed), so the results are the same
whatever runs them and in whatever order: results are sorted by policy, scenario and trial before
anything is aggregated. Wall-clock figures never enter results.json (they go to timing.json).
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from spot_policy.core import paths
from spot_policy_tools.evaluate import ray_connect
from spot_policy_tools.evaluate.scenario import Suite, trial_seed
from spot_policy_tools.evaluate.trial import TRIAL_MODULES, TrialSpec, run_trial, trial_segments
from spot_policy_tools.launcher import fork_server

NOISE_TERMS = {
    "base_lin_vel": "base_lin_vel",
    "base_ang_vel": "base_ang_vel",
    "projected_gravity": "projected_gravity",
    "joint_pos_rel": "joint_pos",
    "joint_pos": "joint_pos",
    "joint_vel_rel": "joint_vel",
    "joint_vel": "joint_vel",
}


@dataclass(frozen=True)
class PolicyInfo:
    """What the evaluation reads from a policy's run folder (env.yaml + ONNX), and nothing else."""

    label: str
    given: str  # as the user gave it
    run_dir: str
    onnx_sha256: str
    ranges: dict[str, tuple[float, float]]
    noise: dict[str, float]
    control_dt: float
    joint_lower: tuple[float, ...]
    joint_upper: tuple[float, ...]
    action_scale: tuple[float, ...]

    def public(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "policy": self.given,
            "onnx_sha256": self.onnx_sha256,
            "command_ranges": {k: list(v) for k, v in self.ranges.items()},
            "observation_noise": self.noise,
            "control_dt_s": self.control_dt,
        }


def policy_info(given: str, label: str) -> PolicyInfo:
    """Resolve a policy as the node does; raises PolicyLoadError with one line if it cannot."""
    from spot_policy.core.isaaclab_yaml import callable_name, load_isaaclab_yaml
    from spot_policy.core.loader import load_spec
    from spot_policy.core.locate import locate_run

    run = locate_run(given, policies_dir=paths.config_dir() / "policies")
    spec = load_spec(run)
    env = load_isaaclab_yaml(Path(spec.env_yaml))
    noise: dict[str, float] = {}
    terms = ((env.get("observations") or {}).get("policy") or {}) if isinstance(env, dict) else {}
    for term in terms.values() if isinstance(terms, dict) else []:
        if not isinstance(term, dict) or not isinstance(term.get("noise"), dict):
            continue
        func = (callable_name(term.get("func")) or str(term.get("func"))).rsplit(":", 1)[-1].rsplit(".", 1)[-1]
        key = NOISE_TERMS.get(func)
        n = term["noise"]
        if key and isinstance(n.get("n_max"), (int, float)) and isinstance(n.get("n_min"), (int, float)):
            noise[key] = float(max(abs(n["n_max"]), abs(n["n_min"])))
    r = spec.command_ranges
    ranges = {"vx": tuple(r["lin_vel_x"]), "vy": tuple(r["lin_vel_y"]), "wz": tuple(r["ang_vel_z"])}
    digest = hashlib.sha256(Path(spec.onnx_path).read_bytes()).hexdigest()
    return PolicyInfo(
        label=label,
        given=given,
        run_dir=str(spec.run_dir),
        onnx_sha256=digest,
        ranges={k: (float(v[0]), float(v[1])) for k, v in ranges.items()},
        noise=noise,
        control_dt=float(spec.control_dt),
        joint_lower=tuple(float(v) for v in spec.joint_lower),
        joint_upper=tuple(float(v) for v in spec.joint_upper),
        action_scale=_action_scale(spec),
    )


def _action_scale(spec) -> tuple[float, ...]:
    """The action scale per joint in the articulation (Isaac) order; joints the action leaves out: 1."""
    scale = dict(zip(spec.action.joint_names, (float(v) for v in spec.action.scale), strict=True))
    return tuple(scale.get(name, 1.0) for name in spec.joint_names)


def trial_specs(
    suite: Suite, policies: Sequence[PolicyInfo], out: Path, media: bool, separate_processes: bool = False
) -> list[TrialSpec]:
    specs = []
    for info in policies:
        for scenario in suite.scenarios:
            for k in range(scenario.trials):
                specs.append(
                    TrialSpec(
                        policy=info.run_dir,
                        label=info.label,
                        scenario=scenario,
                        trial=k,
                        seed=trial_seed(suite.seed, scenario.name, k),
                        out_dir=str(out / "trials" / info.label / scenario.name / f"trial_{k}"),
                        ranges=info.ranges,
                        noise=info.noise,
                        control_dt=info.control_dt,
                        joint_lower=info.joint_lower,
                        joint_upper=info.joint_upper,
                        action_scale=info.action_scale,
                        media=media,
                        separate_processes=separate_processes,
                    )
                )
    return specs


class Progress:
    """One status line: trials done, simulated seconds done, ETA from the sim-seconds rate."""

    def __init__(
        self, total_trials: int, total_sim_s: float, stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self.total_trials, self.total_sim_s = total_trials, total_sim_s
        self.done_trials, self.done_sim_s = 0, 0.0
        self.failed: list[str] = []
        self.started = time.monotonic()
        self.stream = stream or sys.stderr  # looked up now: sys.stderr may have been replaced since import
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def trial_done(self, name: str, sim_s: float, ok: bool) -> None:
        self.done_trials += 1
        self.done_sim_s += sim_s
        if not ok:
            self.failed.append(name)
        self.show(name, ok)

    def show(self, last: str = "", ok: bool = True) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        frac = self.done_sim_s / self.total_sim_s if self.total_sim_s else 1.0
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        width = 28
        bar = "#" * int(width * frac) + "-" * (width - int(width * frac))
        eta_text = f"{eta:5.0f} s" if eta == eta else "    ? s"
        line = (
            f"[{bar}] {self.done_trials}/{self.total_trials} trials, {frac:4.0%}, {elapsed:5.0f} s elapsed, "
            f"ETA {eta_text}" + (f"  {last}{'' if ok else ' (FAILED)'}" if last else "")
        )
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


#: Wall seconds per control step, for ordering trials only (measured on the 2-core CI machine): a
#: step the policy answers, and a quiet one (a stop segment, after a fault) where the bridge steps
#: when its wait for an answer ends (driver.WAIT_SILENT_S, WAIT_FAULTED_S); plus a trial's start-up.
ANSWERED_STEP_S, QUIET_STEP_S, TRIAL_OVERHEAD_S = 0.0012, 0.005, 0.5


def expected_wall_s(spec: TrialSpec) -> float:
    """A rough wall time for the trial, to start the longest first (:func:`longest_first`)."""
    scenario = spec.scenario
    segments, _ = trial_segments(scenario, spec.ranges)
    end_s = segments[-1][2] + segments[-1][3]
    quiet_s = sum(duration for _name, mode, _start, duration, _cmd in segments if mode == "stop")
    if scenario.faults:
        quiet_s = max(quiet_s, end_s - (scenario.lead_s + scenario.faults[0].at_s))
    quiet_s = min(quiet_s, end_s)
    return TRIAL_OVERHEAD_S + ((end_s - quiet_s) * ANSWERED_STEP_S + quiet_s * QUIET_STEP_S) / spec.control_dt


def longest_first(specs: Sequence[TrialSpec]) -> list[TrialSpec]:
    """The order in which parallel workers take the trials: longest expected wall time first, so a
    slow trial (a fault's quiet seconds) never runs alone at the end while the other cores idle.
    The results do not depend on it (:func:`ordered`)."""
    return sorted(specs, key=expected_wall_s, reverse=True)


#: Worker processes per play slot (``--workers``): one trial plays while the other starts up.
PROCESSES_PER_SLOT = 2


def _trial_ok(result: dict) -> bool:
    return result.get("error") is None and not result.get("failed_checks")


def _worker_init(halt: Any, slots: Any) -> None:
    import signal

    from spot_policy_tools.evaluate.trial import install_worker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; children finish their trial
    install_worker(halt, slots)


def run_local(
    specs: Sequence[TrialSpec], workers: int, on_done: Callable[[dict], None], stop: threading.Event
) -> tuple[list[dict], bool]:
    """Trials on ``workers`` processes; returns (results, interrupted). Ctrl-C: no new trials, the
    running ones are stopped (their nodes shut down cleanly), finished ones are kept."""
    results: list[dict] = []
    if workers <= 1:
        for spec in specs:
            if stop.is_set():
                return results, True
            try:
                result = run_trial(spec, stop=stop)
            except KeyboardInterrupt:
                stop.set()
                return results, True
            if result.get("error") == "interrupted":
                return results, True
            results.append({**result, "label": spec.label})
            on_done(results[-1])
        return results, False
    # Workers are forks of one server that has imported everything a trial needs; each runs its
    # trials in forks of itself that fork their nodes in turn (trial.run_trial_in_fork).
    # ``workers`` trials play at once; as many more start up meanwhile (trial.PlaySlot), each then
    # standing at sim time 0 until a slot frees. One trial more than processes is submitted, so a
    # worker that finishes takes the next at once (no round trip through this process); after
    # Ctrl-C neither a queued nor a standing one plays (``halt``).
    ctx = fork_server(*TRIAL_MODULES)
    halt, slots = ctx.Event(), ctx.BoundedSemaphore(workers)
    processes = workers * PROCESSES_PER_SLOT
    pool = ProcessPoolExecutor(max_workers=processes, mp_context=ctx, initializer=_worker_init, initargs=(halt, slots))
    pending: dict[Future, TrialSpec] = {}
    queue = longest_first(specs)
    interrupted = False

    def collect(future: Future) -> None:
        spec = pending.pop(future)
        result = future.result()
        if result.get("error") != "interrupted":
            results.append({**result, "label": spec.label})
            on_done(results[-1])

    try:
        while queue or pending:
            while queue and len(pending) <= processes and not stop.is_set():
                spec = queue.pop(0)
                pending[pool.submit(run_trial, spec, isolated=True)] = spec
            if not pending:
                break
            done, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                collect(future)
            if stop.is_set():
                interrupted = True
                halt.set()
                queue.clear()
    except KeyboardInterrupt:
        interrupted = True
        stop.set()
        halt.set()
        print("\nevaluate: stopping after the running trials (Ctrl-C again to abandon them)", file=sys.stderr)
        try:
            for future in list(pending):
                collect(future)
        except KeyboardInterrupt:
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results, interrupted


def run_ray(
    specs: Sequence[TrialSpec], address: str, on_done: Callable[[dict], None], stop: threading.Event
) -> tuple[list[dict], bool]:
    """Trials as Ray tasks on the cluster at ``address`` (one CPU each)."""
    results: list[dict] = []
    interrupted = False
    with ray_connect.connected(address) as ray:
        task = ray.remote(num_cpus=1, max_retries=0)(run_trial)
        refs = {task.remote(spec): spec for spec in longest_first(specs)}
        try:
            remaining = list(refs)
            while remaining:
                done, remaining = ray.wait(remaining, num_returns=1, timeout=0.5)
                for ref in done:
                    results.append({**ray.get(ref), "label": refs[ref].label})
                    on_done(results[-1])
                if stop.is_set():
                    interrupted = True
                    for ref in remaining:
                        ray.cancel(ref)
                    break
        except KeyboardInterrupt:
            interrupted = True
    return results, interrupted


def ordered(results: Iterable[dict], specs: Sequence[TrialSpec]) -> list[dict]:
    """Results in the suite's order (policy, scenario, trial): independent of who finished first."""
    rank = {(s.label, s.scenario.name, s.trial): i for i, s in enumerate(specs)}
    return sorted(results, key=lambda r: rank[(r["label"], r["scenario"], r["trial"])])
