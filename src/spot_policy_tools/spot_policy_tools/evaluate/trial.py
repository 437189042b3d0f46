"""One trial through the deployed code path: the shipped sim bridge and policy node over DDS, in
lockstep, in a ROS domain of its own, driven by :mod:`.driver`, recorded, then scored.

Runs in any process (a local worker, a Ray task): everything it needs is in :class:`TrialSpec`
(plain data, picklable), and it returns plain data. The driver records the bridge's ground truth
and both nodes' events itself (no recorder process). The trial folder keeps ``logs/`` and, for a
failed trial, ``failure.gif``.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spot_policy.core import contract
from spot_policy.ros import bringup
from spot_policy.ros.dds_isolation import claimed_domain, fast_discovery_environment, isolate_environment
from spot_policy_tools.evaluate.metrics import TrialContext, compute
from spot_policy_tools.evaluate.scenario import Scenario
from spot_sim_bridge.core.backend import DEFAULT_JOINT_POS
from spot_sim_bridge.core.terrain import TerrainSpec

#: ROS domains for trials (the sim job and tests claim 1-99): a claim is a bound localhost port.
TRIAL_DOMAINS = range(100, 216)
BODY_MASS_KG = 31.6


@dataclass(frozen=True)
class TrialSpec:
    policy: str  # the run folder (or policy.onnx) as resolved
    label: str  # the policy's label in the report
    scenario: Scenario
    trial: int
    seed: int
    out_dir: str  # this trial's folder
    ranges: dict[str, tuple[float, float]]
    noise: dict[str, float]  # Isaac Lab observation noise amplitudes from the policy's env.yaml
    control_dt: float
    joint_lower: tuple[float, ...]
    joint_upper: tuple[float, ...]
    action_scale: tuple[float, ...] = (0.2,) * 12
    media: bool = True
    extra_bridge_params: dict[str, Any] = field(default_factory=dict)
    #: The sim bridge and the policy node as two processes (as sim.launch.py starts them) instead of
    #: composed in one (spot_policy_tools.composed_nodes): slower, the same results.
    separate_processes: bool = False


def terrain_of(scenario: Scenario, seed: int) -> TerrainSpec:
    t = scenario.environment["terrain"]
    return TerrainSpec(
        kind=t["kind"],
        slope_deg=t["slope_deg"],
        rough_amplitude_m=t["rough_amplitude_m"],
        step_height_m=t["step_height_m"],
        step_length_m=t["step_length_m"],
        start_x_m=t["start_x_m"],
        seed=seed,
    )


#: Instants per ground-truth message (the bridge also sends one whenever it holds at a timeline
#: point): a second of simulation, instead of three messages per control step.
GROUND_TRUTH_BATCH = 50


def bridge_params(spec: TrialSpec) -> dict[str, Any]:
    """The sim bridge's parameters for this trial (the bridge's own names, config/sim_bridge.yaml)."""
    s, env, sense = spec.scenario, spec.scenario.environment, spec.scenario.sensing
    terrain = env["terrain"]
    scale = sense["noise_scale"] if sense["isaaclab_noise"] else 0.0
    params: dict[str, Any] = {
        "lockstep_barrier": True,
        "lockstep_wait_s": 0.01,  # driver.WAIT_START_S, from the bridge's start on
        "publish_ground_truth": True,
        "ground_truth_batch": GROUND_TRUTH_BATCH,
        "publish_tf": False,  # no viewer: the frames would be work for nobody
        "friction": env["friction"],
        "payload_kg": env["payload_kg"],
        "payload_offset": env["payload_offset_m"],
        "actuator_kp_scale": env["kp_scale"],
        "actuator_torque_limit_scale": env["torque_limit_scale"],
        "terrain": terrain["kind"],
        "terrain_slope_deg": terrain["slope_deg"],
        "terrain_rough_amplitude_m": terrain["rough_amplitude_m"],
        "terrain_step_height_m": terrain["step_height_m"],
        "terrain_step_length_m": terrain["step_length_m"],
        "terrain_start_x_m": terrain["start_x_m"],
        "terrain_seed": spec.seed,
        "sense_seed": spec.seed,
        "added_command_latency_ms": sense["command_latency_ms"],
        "imu_gyro_bias": sense["imu_gyro_bias"],
        "imu_tilt_bias_deg": sense["imu_tilt_bias_deg"],
        "velocity_bias": sense["velocity_bias"],
        "velocity_drift": sense["velocity_drift"],
        "sense_latency_ms": sense["latency_ms"],
        "sense_drop_probability": sense["drop_probability"],
    }
    for term in ("base_lin_vel", "base_ang_vel", "projected_gravity", "joint_pos", "joint_vel"):
        params[f"sense_noise_{term}"] = scale * spec.noise.get(term, 0.0)
    for fault in s.faults:
        at = s.lead_s + fault.at_s
        if fault.kind == "nan":
            params["fault_nan_at_s"] = at
        else:
            params.update(fault_stale_topic=fault.topic, fault_stale_at_s=at, fault_stale_duration_s=fault.duration_s)
    # Set down off the default pose from the bridge's start: the node never sees another start state.
    pose = initial_pose(s, spec.seed)
    params["initial_pose_offsets"] = [round(pose[n] - DEFAULT_JOINT_POS[n], 6) for n in contract.ISAAC_JOINT_ORDER]
    params.update(spec.extra_bridge_params)
    return params


def policy_params(end_s: float) -> dict[str, Any]:
    """The policy node's parameter overrides for a trial: its shipped configuration but for the
    cmd_vel watchdog, set past the trial's end. The driver sends cmd_vel once per segment, each
    acknowledged (driver.TrialDriver.request); a watchdog that expects a stream would need re-sends
    that race the lockstepped simulation. The watchdog itself is tested with the node
    (test_controller.py), not by evaluation scenarios."""
    return {"cmd_vel_timeout_s": round(end_s + 1.0, 3)}


def initial_pose(scenario: Scenario, seed: int) -> dict[str, float]:
    """The default pose with each joint offset by a seeded uniform draw within +-joint_noise_rad."""
    rng = np.random.default_rng([seed, 7])
    offsets = rng.uniform(-scenario.joint_noise_rad, scenario.joint_noise_rad, size=len(DEFAULT_JOINT_POS))
    return {
        name: round(value + float(o), 6) for (name, value), o in zip(DEFAULT_JOINT_POS.items(), offsets, strict=True)
    }


def trial_segments(scenario: Scenario, ranges: dict[str, tuple[float, float]]):
    """The whole trial's segments in trial time: initial stand, zero-velocity walk, the commands."""
    stand = scenario.stand_phase_s
    out = [("initial_stand", "stand", 0.0, stand, (0.0, 0.0, 0.0))]
    if scenario.settle_s > 0:
        out.append(("initial_walk", "walk", stand, scenario.settle_s, (0.0, 0.0, 0.0)))
    commands = scenario.segments(ranges)
    out += [(c.name, c.mode, scenario.lead_s + c.start_s, c.duration_s, c.cmd) for c in commands]
    return out, commands


def trace(data, commands, lead_s: float, rate_hz: float = 10.0) -> dict[str, list[float]]:
    """A 10 Hz excerpt of the trial for the report's plots: commanded and achieved velocity, height."""
    step = max(1, round(1.0 / (rate_hz * max(float(np.median(np.diff(data.t))), 1e-3))))
    idx = np.arange(0, len(data.t), step)
    t = data.t[idx]
    cmd = np.zeros((len(t), 3))
    for c in commands:
        window = (t >= lead_s + c.start_s) & (t < lead_s + c.end_s)
        cmd[window] = c.cmd
    height = data.pos[idx, 2] - data.ground_under_base[idx]
    series = {
        "t": t,
        "vx": data.lin_vel_body[idx, 0],
        "vy": data.lin_vel_body[idx, 1],
        "wz": data.ang_vel_body[idx, 2],
        "cmd_vx": cmd[:, 0],
        "cmd_vy": cmd[:, 1],
        "cmd_wz": cmd[:, 2],
        "height": height,
    }
    return {k: [round(float(v), 4) for v in vals] for k, vals in series.items()}


_T0 = [0.0]


def _phase(what: str) -> None:
    """Where a trial's time goes (EVAL_DEBUG=1): wall seconds since the previous phase; CPU seconds
    so far of this process and of its finished children (with ``--workers`` 2 or more the trial
    process forks its nodes, so they count once stopped; with 1 a fork server does)."""
    now = time.monotonic()
    if os.environ.get("EVAL_DEBUG") and _T0[0]:
        cpu = os.times()
        print(f"evaluate trial: {what}: +{now - _T0[0]:.2f} s (CPU: this process {cpu.user + cpu.system:.2f} s, "
              f"finished children {cpu.children_user + cpu.children_system:.2f} s)", flush=True)  # fmt: skip
    _T0[0] = now


#: How long a trial's node has for each stop signal (SIGINT, SIGTERM, then SIGKILL): its data are
#: the driver's already, and a node stuck in its DDS clean-up (seen once in ~240 trials: rclpy's
#: destroy_node) then costs the trial 2 s instead of 10. A clean stop takes 20-50 ms.
STOP_GRACE_S = 1.0

#: Errors of the machinery, not of the policy: a node process that exited or was killed (another
#: user's cleanup on a shared machine), a recorder that joined late, a machine stalled past the limit.
RETRYABLE = ("exited with", "the recording lost", "timed out")
ATTEMPTS = 3


#: What a process that runs trials uses besides the nodes' modules: preloaded by the fork server
#: that local workers are forked from (runner.run_local), so no worker imports anything.
TRIAL_MODULES = (
    "spot_policy_tools.evaluate.driver",
    "spot_policy_tools.evaluate.trial_data",
    "spot_policy_tools.evaluate.verdict",
    "spot_policy_tools.evaluate.trial_preload",
)


#: In a local pool's worker (runner.run_local): set once the evaluation is interrupted, so a trial
#: queued for the worker before the Ctrl-C does not start.
_halt: list[Any] = [None]
#: In a local pool's worker: the evaluation's play slots (a semaphore of ``--workers``), or None.
_slots: list[Any] = [None]
#: How often a trial waiting for a play slot looks at ``_halt``.
SLOT_POLL_S = 0.1


def install_worker(halt: Any, slots: Any = None) -> None:
    _halt[0], _slots[0] = halt, slots


class PlaySlot:
    """One of the evaluation's ``--workers`` play slots, held by a worker while its trial plays.

    A pool has more worker processes than slots: the extra ones start their trial's nodes, find the
    services and stand the robot at sim time 0 (the bridge holds there, lock-stepped behind its
    barrier, so waiting changes nothing in the run) while the others play; a slot that frees is
    taken by a trial already standing. Start-up is mostly waiting on discovery, so it fills what
    would be idle time. The worker, not the trial process, holds the slot: a trial process that
    dies cannot keep it."""

    def __init__(self, slots: Any, halt: Any) -> None:
        self.slots, self.halt, self.held = slots, halt, False

    def acquire(self) -> bool:
        """True once held (at once without slots); False if the evaluation was interrupted meanwhile."""
        while self.slots is not None and not self.held:
            if self.halt is not None and self.halt.is_set():
                return False
            self.held = self.slots.acquire(timeout=SLOT_POLL_S)
        return True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.slots.release()


def run_trial(
    spec: TrialSpec,
    progress: Callable[[float], None] | None = None,
    stop: threading.Event | None = None,
    isolated: bool = False,
) -> dict[str, Any]:
    """One trial, run again (up to :data:`ATTEMPTS` times) after an error of the machinery. A trial is
    deterministic, so a repeat gives the numbers the first run would have; ``attempts`` and the
    earlier errors go to timing.json only. ``isolated``: each attempt in a fork of this process
    (:func:`run_trial_in_fork`), which must be a fresh fork of the preloading server."""
    if isolated and _halt[0] is not None and _halt[0].is_set():
        return {"scenario": spec.scenario.name, "trial": spec.trial, "seed": spec.seed, "error": "interrupted"}
    errors: list[str] = []
    for attempt in range(1, ATTEMPTS + 1):
        result = run_trial_in_fork(spec) if isolated else run_trial_once(spec, progress, stop)
        error = result.get("error") or ""
        if not any(mark in error for mark in RETRYABLE) or attempt == ATTEMPTS or (stop and stop.is_set()):
            break
        errors.append(error.splitlines()[0][:300])
    result["attempts"] = attempt
    result["retried_after"] = errors
    return result


def run_trial_in_fork(spec: TrialSpec) -> dict[str, Any]:
    """:func:`run_trial_once` in a fork of this process, which forks the trial's nodes from itself
    before it starts ROS: this process never starts ROS, so it stays safe to fork for the next
    trial, and with it one fork server serves a whole evaluation (no imports per worker, no fork
    server per worker). Between standing and playing the trial asks this process for a
    :class:`PlaySlot` ("ready"; "played" when done with it)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    here, there = context.Pipe(duplex=True)
    child = context.Process(target=_trial_child, args=(spec, there), name=f"trial {spec.scenario.name}")
    child.start()
    there.close()
    slot = PlaySlot(_slots[0], _halt[0])
    try:
        while True:  # the child exits right after its result: multiprocessing reaps it at the next start
            message = here.recv()
            if message == "ready":
                here.send(slot.acquire())
            elif message == "played":
                slot.release()
            else:
                result = message
                break
    except EOFError:
        child.join()  # its exit status, for the message
        result = {"scenario": spec.scenario.name, "trial": spec.trial, "seed": spec.seed,
                  "error": f"the trial process exited with {child.exitcode} before its result"}  # fmt: skip
    finally:
        slot.release()
        here.close()
    return result


def _trial_child(spec: TrialSpec, parent) -> None:
    from spot_policy_tools.launcher import end_with_parent

    end_with_parent()

    def may_play() -> bool:
        parent.send("ready")
        return bool(parent.recv())

    result = run_trial_once(spec, fork_here=True, may_play=may_play, played=lambda: parent.send("played"))
    parent.send(result)
    parent.close()


def run_trial_once(
    spec: TrialSpec,
    progress: Callable[[float], None] | None = None,
    stop: threading.Event | None = None,
    fork_here: bool = False,
    may_play: Callable[[], bool] | None = None,
    played: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run, record and score one trial; never raises for a trial that went wrong (``error`` says why).
    ``fork_here``: fork the nodes from this process (:class:`spot_policy_tools.launcher.NodeGroup`).
    ``may_play``: asked once the robot stands at sim time 0; blocks until the trial may play, False
    if it must not (interrupted); ``played``: called when the play is over (:class:`PlaySlot`)."""
    from spot_policy_tools.evaluate.driver import DriverError, TrialDriver, timeline
    from spot_policy_tools.evaluate.trial_data import TrialDataError, collect, trial_data
    from spot_policy_tools.launcher import ComposedNodes, NodeGroup

    scenario = spec.scenario
    out = Path(spec.out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    segments, commands = trial_segments(scenario, spec.ranges)
    end_s = segments[-1][2] + segments[-1][3]
    pushes = [(scenario.lead_s + p.at_s, p.velocity) for p in scenario.pushes]
    fault_at = scenario.lead_s + scenario.faults[0].at_s if scenario.faults else None
    points = timeline(segments, pushes, fault_at, end_s, spec.control_dt)
    result: dict[str, Any] = {"scenario": scenario.name, "trial": spec.trial, "seed": spec.seed, "error": None}
    _phase("start")
    started = time.monotonic()
    wall_limit = 60.0 + 6.0 * end_s
    with claimed_domain(TRIAL_DOMAINS) as domain:
        env = fast_discovery_environment(isolate_environment(domain, dict(os.environ)))
        group = NodeGroup(out / "logs", env, preloaded=True, fork_here=fork_here)
        driver = None
        try:
            nodes = bringup.sim_nodes(
                spec.policy,
                realtime=False,
                teleop=False,
                extra_bridge_params=bridge_params(spec),
                extra_policy_params=policy_params(end_s),
            )
            for node in nodes if spec.separate_processes else [ComposedNodes(nodes)]:
                group.start(node)

            def alive() -> str | None:
                if stop is not None and stop.is_set():
                    return "interrupted"
                broken = group.failed()
                return f"{broken.name} exited with {broken.poll()}: {broken.tail(6)}" if broken else None

            driver = TrialDriver(domain, group.env)
            _phase("nodes started")
            first_mode = segments[0][1]
            driver.start(None, first_mode, alive)  # the bridge starts in the trial's initial pose
            _phase("standing")
            waiting = time.monotonic()
            if may_play is not None and not may_play():
                raise DriverError("interrupted")
            playing = time.monotonic()
            result["slot_wait_s"] = round(playing - waiting, 3)
            try:
                driver.play(points, first_mode, alive, wall_limit, progress)
            finally:
                ended = time.monotonic()  # before the slot goes: spans of one slot never overlap
                if played is not None:
                    played()
            result["play_wall_s"] = round(ended - playing, 3)  # sim time 0 to the end
            result["play_span"] = (playing, ended)  # this machine's monotonic clock (timing.json)
            recorded = driver.series()
            _phase("played")
        except DriverError as exc:
            result["error"] = str(exc)
        finally:
            if driver is not None:
                driver.close()
            group.stop(together=True, grace_s=STOP_GRACE_S)
            _phase("stopped")
    result["wall_s"] = round(time.monotonic() - started, 3)
    result["sim_s"] = end_s
    if result["error"] is not None:
        return result

    from spot_policy_tools.evaluate.verdict import judge

    terrain = terrain_of(scenario, spec.seed)
    try:
        data, timing = trial_data(collect(recorded), terrain)
    except TrialDataError as exc:
        result["error"] = f"the recording lost everything: {exc}"
        return result
    context = TrialContext(
        segments=commands,
        lead_s=scenario.lead_s,
        total_mass_kg=BODY_MASS_KG + scenario.environment["payload_kg"],
        joint_lower=np.asarray(spec.joint_lower),
        joint_upper=np.asarray(spec.joint_upper),
        ranges=spec.ranges,
        control_dt=spec.control_dt,
        action_scale=np.asarray(spec.action_scale),
        fault_at_s=fault_at,
    )
    _phase("read bag")
    expected = round(end_s / spec.control_dt)
    if len(data.t) < expected:  # never score a run from a recording with holes
        result["error"] = f"the recording lost {expected + 1 - len(data.t)} of {expected + 1} ground-truth instants"
        return result
    metrics = compute(data, context)
    _phase("metrics")
    if scenario.pushes:  # the push ladder: the largest kick the robot stood through (1 s after it)
        fall = metrics["time_to_fall_s"]
        survived = [p.speed_m_s for p in scenario.pushes if fall is None or scenario.lead_s + p.at_s + 1.0 <= fall]
        metrics["push_survived_m_s"] = max(survived, default=0.0)
    result["metrics"] = metrics
    result["trace"] = trace(data, commands, scenario.lead_s)
    result["timing"] = {k: timing[k] for k in sorted(timing) if k.endswith(("_median", "_p99"))}
    own = judge(scenario, [metrics])
    result["failed_checks"] = own["failed_checks"]
    failed = bool(own["failed_checks"])
    if failed and spec.media:
        try:
            from spot_policy_tools.evaluate.media import render_gif

            gif = render_gif(data, terrain, out / "failure.gif", focus_s=metrics.get("time_to_fall_s") or fault_at)
            result["media"] = str(gif)  # the runner makes it relative to the evaluation's folder
        except Exception as exc:  # no GL on this machine: the numbers still count
            result["media_error"] = f"{type(exc).__name__}: {exc}"
    return result
