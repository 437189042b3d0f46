"""Simulator sections of ``spot-policy bench``, each beside a baseline from the same run.

- ``physics``: ``MujocoSpot.step`` (PD law + torque limits + MuJoCo) vs a bare ``mj_step``.
- ``lockstep``: real-time factor of bridge + policy node as separate processes over DDS (lockstep,
  input-triggered) vs the same loop in one process without ROS (the cores called directly).
- ``realtime``: period jitter of the bridge's physics pacing at 500 Hz while the policy walks, vs
  the same pacer running empty.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from spot_policy.core import contract, paths
from spot_policy.core.stats import summarize
from spot_policy.ros import bringup
from spot_policy_tools.bench.common import Row


def bench_physics(args: argparse.Namespace) -> list[Row]:
    import mujoco

    from spot_sim_bridge.core.bridge import load_actuation, make_backend

    actuation = load_actuation(args.policy, policies_dir=paths.config_dir() / "policies")
    backend = make_backend("mujoco", actuation.physics_dt)
    backend.set_gains(actuation.kp, actuation.kd)
    backend.set_targets(actuation.in_order(actuation.default_joint_pos, backend.joint_names))
    model, data = backend.mj_model, mujoco.MjData(backend.mj_model)
    data.qpos[:] = backend.mj_data.qpos
    n = max(1000, args.iterations)

    def ours() -> None:
        backend.step(1)

    def bare() -> None:
        mujoco.mj_step(model, data)

    from spot_policy_tools.bench.common import interleaved

    bare_ns, ours_ns = interleaved(bare, ours, n, block=250)
    o, b = summarize(ours_ns / 1e3), summarize(bare_ns / 1e3)
    steps_per_s = 1e6 / o["median"]
    return [
        Row(
            "physics",
            f"MujocoSpot.step: PD + torque limits + mj_step ({steps_per_s:,.0f} steps/s, "
            f"{steps_per_s * actuation.physics_dt:.0f}x real time)",
            "us/step",
            o["median"],
            o["p99"],
            "bare mujoco.mj_step",
            b["median"],
            b["p99"],
            "report (no goal)",
            None,
        )
    ]


def core_loop_rtf(policy: str, seconds: float) -> float:
    """The lockstep loop without ROS: bridge core and policy controller called directly."""
    from spot_policy.core.controller import ControllerConfig, Mode, PolicyController
    from spot_policy.core.loader import load_policy
    from spot_sim_bridge.core.bridge import Actuation, BridgeCore, make_backend

    loaded = load_policy(policy, providers=["cpu"], policies_dir=paths.config_dir() / "policies", log=lambda m: None)
    actuation = Actuation.from_spec(loaded.spec)
    core = BridgeCore(make_backend("mujoco", actuation.physics_dt), actuation)
    controller = PolicyController(loaded.spec, loaded.model, ControllerConfig(soft_start_s=0.0))

    def feed() -> None:
        s = core.state()
        w, x, y, z = s.base_quat
        controller.joint_state(s.joint_names, s.q, s.dq, s.sim_time, s.sim_time)
        controller.imu((x, y, z, w), s.base_ang_vel_body, s.sim_time, s.sim_time)
        controller.odom(s.base_lin_vel_body, s.sim_time, s.sim_time)
        controller.cmd_vel(0.5, 0.0, 0.0, s.sim_time)

    feed()
    controller.request(Mode.WALK, core.sim_time)
    periods, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        command = controller.step(core.sim_time)
        if command is None:
            raise RuntimeError(f"controller stopped: {controller.fault_reason}")
        core.command(command.names, command.positions)
        core.lockstep_step()
        feed()
        periods += 1
    return periods * actuation.control_dt / (time.perf_counter() - start)


class _Watcher:
    """A small rclpy side for the process benchmarks: keeps diagnostics (and the bridge's sim time
    by wall time), and keeps cmd_vel alive while walking. It stays off the 50 Hz command path, so
    it takes no CPU from the loop it measures."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import Twist
        from rclpy.executors import SingleThreadedExecutor
        from std_srvs.srv import Trigger

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("bench_sim", context=self.context)
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.sim_times: list[tuple[float, float]] = []  # (wall, bridge sim time) per diagnostics
        self.node.create_subscription(DiagnosticArray, contract.TOPIC_DIAGNOSTICS, self._on_diag, 10)
        self.cmd_pub = self.node.create_publisher(Twist, contract.TOPIC_CMD_VEL, 10)
        self._cmd_vel: Twist | None = None
        # cmd_vel times out after 0.5 s of the policy's (simulated) time: 40 Hz wall covers 20x.
        self.node.create_timer(0.025, self._keep_walking)
        self.trigger = Trigger
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._run = True
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self._run:
            self.executor.spin_once(timeout_sec=0.05)

    def _keep_walking(self) -> None:
        if self._cmd_vel is not None:
            self.cmd_pub.publish(self._cmd_vel)

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            self.diagnostics[status.name] = values
            if status.name.startswith("sim_bridge") and "sim_time_s" in values:
                self.sim_times.append((time.monotonic(), float(values["sim_time_s"])))

    def call(self, service: str, timeout: float = 30.0) -> tuple[bool, str]:
        client = self.node.create_client(self.trigger, service)
        if not client.wait_for_service(timeout_sec=timeout):
            raise RuntimeError(f"{service} did not appear")
        future = client.call_async(self.trigger.Request())
        end = time.monotonic() + timeout
        while not future.done() and time.monotonic() < end:
            time.sleep(0.01)
        result = future.result()
        return (bool(result.success), result.message) if result else (False, "no answer")

    def walk(self, vx: float = 0.5) -> None:
        from geometry_msgs.msg import Twist

        msg = Twist()
        msg.linear.x = vx
        self._cmd_vel = msg
        for _ in range(200):
            self.cmd_pub.publish(msg)
            ok, why = self.call("/policy_node/walk")
            if ok:
                return
            time.sleep(0.1)
        raise RuntimeError(f"policy node did not walk: {why}")

    def close(self) -> None:
        self._run = False
        self._thread.join(timeout=2)
        self.executor.shutdown()
        self.node.destroy_node()
        import rclpy

        rclpy.shutdown(context=self.context)


def _bring_up(policy: str, realtime: bool, log_dir: Path):
    from spot_policy_tools.launcher import NodeGroup

    specs = bringup.sim_nodes(policy, realtime=realtime, teleop=False, extra_bridge_params={"lockstep_wait_s": 0.05})
    group = NodeGroup(log_dir)
    for spec in specs:
        group.start(spec)
    return group


def bench_lockstep(args: argparse.Namespace) -> list[Row]:
    import tempfile

    from spot_policy.ros.dds_isolation import claim_domain

    claim_domain()
    seconds = args.seconds
    baseline = core_loop_rtf(args.policy, seconds)
    with tempfile.TemporaryDirectory() as logs:
        group = _bring_up(args.policy, realtime=False, log_dir=Path(logs))
        watcher = _Watcher()
        try:
            watcher.walk()
            time.sleep(1.5)
            watcher.sim_times.clear()
            time.sleep(seconds + 1.0)
            samples = list(watcher.sim_times)
        finally:
            watcher.close()
            group.stop()
    if len(samples) < 2:
        raise RuntimeError("fewer than two diagnostics from the sim bridge: its sim time could not be followed")
    (wall0, sim0), (wall1, sim1) = samples[0], samples[-1]
    rtf = (sim1 - sim0) / (wall1 - wall0)
    return [
        Row(
            "lockstep",
            "lockstep real-time factor: sim bridge + policy node over DDS, walking",
            "x real time",
            rtf,
            float("nan"),
            "the same loop in one process, no ROS",
            baseline,
            float("nan"),
            ">= 10x real time",
            rtf >= 10.0,
        )
    ]


def bench_realtime(args: argparse.Namespace) -> list[Row]:
    import tempfile

    from spot_policy.ros.dds_isolation import claim_domain
    from spot_sim_bridge.core.bridge import RealtimePacer

    claim_domain()
    pacer = RealtimePacer(0.002)
    end = time.perf_counter() + min(args.seconds, 3.0)
    while time.perf_counter() < end:
        pacer.wait()
    empty = pacer.period_jitter_s
    with tempfile.TemporaryDirectory() as logs:
        group = _bring_up(args.policy, realtime=True, log_dir=Path(logs))
        watcher = _Watcher()
        try:
            watcher.walk()
            watcher.diagnostics.clear()
            time.sleep(args.seconds + 1.5)  # diagnostics cover the last 2000 physics steps
            bridge = next((v for k, v in watcher.diagnostics.items() if k.startswith("sim_bridge")), None)
        finally:
            watcher.close()
            group.stop()
    if bridge is None:
        raise RuntimeError("no diagnostics from the sim bridge")
    median, p99 = float(bridge["period_jitter_ms_median"]), float(bridge["period_jitter_ms_p99"])
    return [
        Row(
            "realtime",
            f"realtime physics period jitter at 500 Hz, policy walking (rtf {bridge.get('real_time_factor', '?')})",
            "ms",
            median,
            p99,
            "the same pacer, empty loop",
            empty.median * 1e3,
            empty.p99 * 1e3,
            "report (no goal)",
            None,
        )
    ]


SECTIONS = {"physics": bench_physics, "lockstep": bench_lockstep, "realtime": bench_realtime}
