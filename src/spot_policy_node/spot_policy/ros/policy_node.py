"""``ros2 run spot_policy policy_node``: the policy controller behind the topic contract.

A thin adapter: parameters, QoS, timers, services and diagnostics here; every decision in
:mod:`spot_policy.core.controller`. Identical in simulation and on the robot.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float32MultiArray, Int64MultiArray, String
from std_srvs.srv import Trigger

from spot_policy.core import contract, paths
from spot_policy.core.controller import Command, ControllerConfig, Mode, PolicyController
from spot_policy.core.loader import LoadedPolicy, load_policy
from spot_policy.ros import cdr, qos_events
from spot_policy.ros import debug_stream as debug
from spot_policy.ros.hot_loop import HotInputs
from spot_policy.ros.input_guard import InputGuard
from spot_policy.ros.node_main import run_node
from spot_policy.ros.node_parts import log_event
from spot_policy.ros.polling import PolledGroup, take_raw
from spot_policy.ros.state_publisher import plain_cdr_fallback

TRIGGERS = ("timer", "input")
#: Polled state inputs (timer trigger): deep enough for a tick's worth of a 333 Hz stream.
POLLED_STATE_QOS = QoSProfile(depth=16, reliability=ReliabilityPolicy.BEST_EFFORT)
#: Commands: reliable, newest only (a late target is worse than none).
COMMAND_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
#: The debug stream: reliable, queued (a recorder must get every step to replay them).
DEBUG_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
EVENTS_QOS = QoSProfile(
    depth=debug.EVENTS_DEPTH, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


def stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class PolicyNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("policy_node", **kwargs)
        p = self.declare_parameters(
            "",
            [
                ("policy", "spot_flat_mjx"),
                ("logs_root", ""),
                ("providers", ["tensorrt", "cuda", "cpu"]),
                ("intra_op_threads", 1),
                ("trigger", "timer"),
                ("stand_duration_s", 2.0),
                ("soft_start_s", 0.5),
                ("input_timeout_s", 0.0),
                ("cmd_vel_timeout_s", 0.5),
                ("diagnostics_period_s", 1.0),
                ("executor", "single"),
                ("publish_debug", True),
                ("start_after_debug_readers", 0),
            ],
        )
        params = {param.name: param.value for param in p}
        self.trigger = str(params["trigger"])
        if self.trigger not in TRIGGERS:
            raise ValueError(f"parameter trigger is '{self.trigger}'; use one of {', '.join(TRIGGERS)}")
        self._policy_arg, self._logs_root = str(params["policy"]), str(params["logs_root"])
        self.loaded: LoadedPolicy = load_policy(
            params["policy"],
            providers=list(params["providers"]),
            intra_op_threads=int(params["intra_op_threads"]),
            logs_root=params["logs_root"] or None,
            policies_dir=paths.config_dir() / "policies",
            log=self.get_logger().warning,
            info=self.get_logger().info,
        )
        spec = self.loaded.spec
        config = ControllerConfig(
            stand_duration_s=float(params["stand_duration_s"]),
            soft_start_s=float(params["soft_start_s"]),
            input_timeout_s=float(params["input_timeout_s"]) or None,
            cmd_vel_timeout_s=float(params["cmd_vel_timeout_s"]),
        )
        self.controller = PolicyController(spec, self.loaded.model, config, self._on_event)
        # The debug stream (spot_policy.ros.debug_stream): what a replay needs to re-run this node.
        self.publish_debug = bool(params["publish_debug"])
        self.view = debug.InputView()
        self._seq = 0
        self._op, self._op_ns = "init", 0  # what the node is doing, at which clock time (for events)
        self._newest_input_ns = 0  # the newest state input's arrival on the node's clock
        # A recorded run: the first stand/walk waits until the recorder reads the debug stream (it is
        # not latched; a reader matched late loses the steps before). The graph a job sees can list
        # the recorder's subscription before this node's writers have matched it (seen: 1 s later).
        self._debug_readers_wanted = int(params["start_after_debug_readers"])
        if self._debug_readers_wanted < 0:
            raise ValueError(
                f"parameter start_after_debug_readers is {self._debug_readers_wanted}; use 0 (none) or more"
            )
        if self._debug_readers_wanted and not self.publish_debug:
            raise ValueError("parameter start_after_debug_readers needs publish_debug: true (nothing to wait for)")
        if self.publish_debug:
            self._setup_debug(config)

        warn = self.get_logger().warning
        self.command_pub = self.create_publisher(
            JointState,
            contract.TOPIC_JOINT_COMMAND,
            COMMAND_QOS,
            event_callbacks=qos_events.contract_publisher(contract.TOPIC_JOINT_COMMAND, warn),
        )
        self._encode_command: cdr.JointStateEncoder | None = None
        self.diag_pub = self.create_publisher(
            DiagnosticArray, contract.TOPIC_DIAGNOSTICS, 10, event_callbacks=qos_events.internal_publisher()
        )
        # State inputs arrive raw (serialized) and are read by spot_policy.ros.cdr: rclpy's conversion to
        # message objects costs more than the policy's inference. With the timer trigger the node
        # takes them itself at each tick (POLLED: the executor never wakes for them): a robot
        # streams ~1000 state messages/s, and an executor wake-up per message took ~40 % of a core.
        self._read_joint_states = plain_cdr_fallback(cdr.JointStateDecoder(), JointState)
        self._read_imu = plain_cdr_fallback(cdr.decode_imu, Imu)
        self._read_odom = plain_cdr_fallback(cdr.decode_odometry_twist, Odometry)
        self._read_twist = plain_cdr_fallback(cdr.decode_twist, Twist)
        # A payload none of them can read is counted and reported, never raised (spot_policy.ros.input_guard).
        self.guard = InputGuard(self.get_logger().warning)
        # With the input trigger the node waits on them itself (spot_policy.ros.hot_loop: HOT): the
        # executor's wake-ups were most of a lock-stepped cycle's time.
        polled = self.trigger == "timer"
        self._hot = self.trigger == "input" and params["executor"] == "single"
        self._inputs = [
            (
                self.create_subscription(
                    msg_type,
                    topic,
                    callback,
                    POLLED_STATE_QOS if polled else qos_profile_sensor_data,
                    raw=True,
                    event_callbacks=qos_events.contract_subscription(topic, warn),
                    callback_group=PolledGroup() if polled or self._hot else None,
                ),
                handle,
            )
            for msg_type, topic, callback, handle in (
                (JointState, contract.TOPIC_JOINT_STATES, self._on_joint_states, self._joint_states),
                (Imu, contract.TOPIC_IMU, self._on_imu, self._imu),
                (Odometry, contract.TOPIC_ODOM, self._on_odom, self._odom),
            )
        ]
        self.create_subscription(
            Twist,
            contract.TOPIC_CMD_VEL,
            self._on_cmd_vel,
            10,
            raw=True,
            event_callbacks=qos_events.contract_subscription(contract.TOPIC_CMD_VEL, warn),
        )
        for name, mode in (("stand", Mode.STAND), ("walk", Mode.WALK), ("stop", Mode.IDLE)):
            self.create_service(Trigger, f"~/{name}", self._mode_service(mode))
        self.create_service(Trigger, "~/reset", self._on_reset)

        # Control steps run on the ROS clock, so they follow /clock under use_sim_time. In input
        # mode the same timer only runs the watchdogs; steps come with joint_states.
        self.create_timer(spec.control_dt, self._on_control_timer)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._diag_period = float(params["diagnostics_period_s"])
        self.create_timer(self._diag_period, self._publish_diagnostics, clock=steady)
        self._counts_at_diag = dict(self.controller.input_counts)
        self._diag_wall = time.monotonic()
        model = self.loaded.model
        self.get_logger().info(
            f"policy {spec.run_dir} ({model.provider}, obs {spec.obs_dim} -> {spec.action_dim}), "
            f"{spec.control_rate_hz:.0f} Hz, trigger={self.trigger}; idle until ~/stand or ~/walk"
        )

    # ---------------------------------------------------------------- inputs
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _input(self, offset: int, stamp_ns: int, arrived_ns: int | None) -> int:
        """Note an input's arrival in the view (before the controller sees it); returns its arrival
        time on the node's clock in ns (``arrived_ns`` when known, else now)."""
        if arrived_ns is None:
            clock = self.get_clock()
            arrived_ns = clock.now().nanoseconds
            if stamp_ns > arrived_ns and clock.ros_time_is_active:
                # Simulated time: the simulator publishes /clock = stamp just before the state, so
                # this state arrived at its stamp; its /clock message is still queued (the node
                # reads /clock between steps). Counting it as older would trip the watchdog.
                arrived_ns = stamp_ns
        self.view.state(offset, stamp_ns, arrived_ns)
        self._op, self._op_ns = "input", arrived_ns
        self._newest_input_ns = max(self._newest_input_ns, arrived_ns)
        return arrived_ns

    def hot_inputs(self) -> HotInputs | None:
        """Input trigger, for run_node's HotLoop (None: the executor's): the node waits on
        joint_states alone, the last message of an instant (spot_policy.ros.state_publisher), and
        takes that instant's imu/data and odom with it: one wake-up per instant instead of three."""
        return HotInputs([self._inputs[0][0]], self._on_inputs_ready) if self._hot else None

    def _read(self, name: str, reader, data: bytes):
        """``reader(data)``, or None for a payload it cannot read: counted, reported, and handed to
        the controller (a fault when the mode needs that input), with an event a replay follows."""
        try:
            return reader(data)
        except Exception as exc:  # no input may raise out of a callback
            reason = str(exc) or type(exc).__name__
            self.guard.bad(name, reason)
            now_ns = self.get_clock().now().nanoseconds
            self._op, self._op_ns = "input", now_ns
            self._event("bad_input", input=name, reason=reason)
            self.controller.bad_input(name, reason, now_ns * 1e-9)
            return None

    def _on_inputs_ready(self) -> None:
        for sub, handle in self._inputs:
            while (taken := take_raw(sub)) is not None:
                self._after_input(handle(taken[0]))

    # Executor callbacks: handle the message, then (input trigger) step if it completed an instant.
    def _on_joint_states(self, data: bytes) -> None:
        self._after_input(self._joint_states(data))

    def _on_imu(self, data: bytes) -> None:
        self._after_input(self._imu(data))

    def _on_odom(self, data: bytes) -> None:
        self._after_input(self._odom(data))

    def _joint_states(self, data: bytes, arrived_ns: int | None = None) -> int | None:
        m = self._read(contract.TOPIC_JOINT_STATES, self._read_joint_states, data)
        if m is None:
            return None
        now_ns = self._input(debug.JOINT_STATES, m.stamp_ns, arrived_ns)
        self.controller.joint_state(m.names, m.position, m.velocity, now_ns * 1e-9, m.stamp_ns * 1e-9, m.effort)
        return now_ns

    def _imu(self, data: bytes, arrived_ns: int | None = None) -> int | None:
        read = self._read(contract.TOPIC_IMU, self._read_imu, data)
        if read is None:
            return None
        stamp_ns, orientation, angular_velocity = read
        now_ns = self._input(debug.IMU, stamp_ns, arrived_ns)
        self.controller.imu(orientation, angular_velocity, now_ns * 1e-9, stamp_ns * 1e-9)
        return now_ns

    def _odom(self, data: bytes, arrived_ns: int | None = None) -> int | None:
        read = self._read(contract.TOPIC_ODOM, self._read_odom, data)
        if read is None:
            return None
        stamp_ns, linear = read
        now_ns = self._input(debug.ODOM, stamp_ns, arrived_ns)
        self.controller.odom(linear, now_ns * 1e-9, stamp_ns * 1e-9)
        return now_ns

    def _on_cmd_vel(self, data: bytes) -> None:
        command = self._read(contract.TOPIC_CMD_VEL, self._read_twist, data)
        if command is None:
            return
        # Under simulated time the node's clock can lag the newest state by one HotLoop catch-up
        # (/clock is read there, the states at once): cmd_vel arrived no earlier than that state.
        now_ns = max(self.get_clock().now().nanoseconds, self._newest_input_ns)
        vx, vy, wz = command
        self.view.cmd_vel(now_ns, vx, vy, wz)
        self._op, self._op_ns = "input", now_ns
        self.controller.cmd_vel(vx, vy, wz, now_ns * 1e-9)

    # ---------------------------------------------------------------- stepping
    def _after_input(self, now_ns: int | None) -> None:
        if self.trigger != "input":
            return
        if not self.controller.input_step_due():
            # The other state topics of this instant are usually in already: take them now instead
            # of after one executor round trip each (~0.1-0.2 ms in rclpy), in order per topic.
            for sub, handle in self._inputs:
                while (taken := take_raw(sub)) is not None:
                    now_ns = handle(taken[0]) or now_ns
            if not self.controller.input_step_due():
                return
        if now_ns is None:
            return
        self._op = "step"
        self._publish(self.controller.step(now_ns * 1e-9), now_ns)

    def _on_control_timer(self) -> None:
        now_ns = self.get_clock().now().nanoseconds
        if self.trigger == "timer":
            self._take_inputs(now_ns)
            self._op, self._op_ns = "step", now_ns
            self._publish(self.controller.step(now_ns * 1e-9), now_ns)
        else:
            self._op, self._op_ns = "check", now_ns
            self.controller.check_watchdogs(now_ns * 1e-9)

    def _take_inputs(self, now_ns: int) -> None:
        """Timer trigger: everything that arrived since the last tick, in order per topic, each
        noted at its arrival (the middleware's receive time moved onto the node's clock)."""
        system_now = time.time_ns()
        for sub, handle in self._inputs:
            while (taken := take_raw(sub)) is not None:
                received = taken[1].get("received_timestamp") or system_now
                handle(taken[0], now_ns - max(0, system_now - received))

    def _publish(self, command: Command | None, now_ns: int) -> None:
        if command is None:
            return
        # Published pre-serialized (spot_policy.ros.cdr): only the stamp and positions change per step.
        if self._encode_command is None or command.names != self._encode_command.names:
            self._encode_command = cdr.JointStateEncoder(command.names)
        self.command_pub.publish(self._encode_command(now_ns, command.positions))
        if self.publish_debug:  # after the command: its latency stays that of the command alone
            self._publish_step(now_ns)

    # ---------------------------------------------------------------- debug stream
    def _setup_debug(self, config: ControllerConfig) -> None:
        spec = self.loaded.spec

        def publisher(msg_type: type, name: str, qos: QoSProfile):
            return self.create_publisher(msg_type, f"~/{name}", qos, event_callbacks=qos_events.internal_publisher())

        self.step_pub = publisher(Int64MultiArray, debug.TOPIC_STEP, DEBUG_QOS)
        self.obs_pub = publisher(Float32MultiArray, debug.TOPIC_OBSERVATION, DEBUG_QOS)
        self.action_pub = publisher(Float32MultiArray, debug.TOPIC_ACTION, DEBUG_QOS)
        self.events_pub = publisher(String, debug.TOPIC_EVENTS, EVENTS_QOS)
        self._debug_pubs = {
            debug.TOPIC_STEP: self.step_pub,
            debug.TOPIC_OBSERVATION: self.obs_pub,
            debug.TOPIC_ACTION: self.action_pub,
        }
        # Each step publishes serialized bytes: a constant layout prefix + the values (cheap).
        self._step_prefix = debug.multiarray_prefix("step", len(debug.STEP_FIELDS), 8)
        self._obs_prefix = debug.multiarray_prefix("obs", spec.obs_dim, 4)
        self._action_prefix = debug.multiarray_prefix("action", spec.action_dim, 4)
        self._event(
            "start",
            node=f"{self.get_namespace().rstrip('/')}/{self.get_name()}",
            policy=str(spec.run_dir),
            policy_arg=self._policy_arg,  # as the user gave it: a shipped name, a path, "latest"
            logs_root=self._logs_root,
            onnx=str(spec.onnx_path),
            onnx_sha256=hashlib.sha256(spec.onnx_path.read_bytes()).hexdigest(),
            provider=self.loaded.model.provider,
            trigger=self.trigger,
            control_dt=spec.control_dt,
            config=asdict(config),
            obs_terms=[[t.name, t.func, t.start, t.stop] for t in spec.obs_terms],
            action_joints=list(spec.action.joint_names),
            step_fields=list(debug.STEP_FIELDS),
        )

    def _publish_step(self, now_ns: int) -> None:
        """The step record, and for a policy step its observation and raw action (no recomputation)."""
        self._seq += 1
        if not self.step_pub.get_subscription_count():
            return  # nobody records: three publishes saved per step (~10 % of a lockstep cycle here)
        record = self.view.record
        record[0], record[1] = self._seq, now_ns
        self.step_pub.publish(self._step_prefix + record.tobytes())
        controller = self.controller
        if controller.mode is Mode.WALK:
            self.obs_pub.publish(self._obs_prefix + controller.last_observation.tobytes())
            self.action_pub.publish(self._action_prefix + controller.last_action.tobytes())

    def _event(self, event: str, **fields: object) -> None:
        """One ``~/events`` record: what happened, when, in which mode, after which inputs."""
        if not self.publish_debug:
            return
        if event != "start":
            self._seq += 1
        record = {
            "seq": self._seq,
            "event": event,
            "t_ns": self._op_ns,
            "op": self._op,
            "mode": self.controller.mode.value,
            **fields,
            "inputs": self.view.as_dict(),
        }
        self.events_pub.publish(String(data=json.dumps(record)))

    # ---------------------------------------------------------------- services
    def _mode_service(self, mode: Mode):
        def handle(_request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            now_ns = self.get_clock().now().nanoseconds
            self._op, self._op_ns = "service", now_ns
            unread = self._debug_unread() if mode is not Mode.IDLE else ""
            if unread:
                response.success, response.message = False, unread
            else:
                response.success, response.message = self.controller.request(mode, now_ns * 1e-9)
            self._event("request", requested=mode.value, accepted=response.success, message=response.message)
            if not response.success:
                self.get_logger().warning(
                    f"~/{mode.value if mode is not Mode.IDLE else 'stop'} refused: {response.message}"
                )
            return response

        return handle

    def _debug_unread(self) -> str:
        """Why a stand/walk must wait for the debug stream's readers ("" once they matched: from then
        on a recorder that goes away never keeps the robot from standing)."""
        wanted = self._debug_readers_wanted
        if not wanted:
            return ""
        counts = {f"~/{n}": pub.get_subscription_count() for n, pub in self._debug_pubs.items()}
        if min(counts.values()) >= wanted:
            self._debug_readers_wanted = 0
            return ""
        matched = ", ".join(f"{topic} {n}" for topic, n in counts.items())
        return (
            f"waiting for {wanted} reader(s) of the debug stream (start_after_debug_readers), matched: {matched}; "
            "fix: start the recorder, or set start_after_debug_readers: 0"
        )

    def _on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._op, self._op_ns = "service", self.get_clock().now().nanoseconds
        response.success, response.message = self.controller.reset()
        self._event("reset", accepted=response.success, message=response.message)
        return response

    def _on_event(self, level: str, message: str) -> None:
        log_event(self.get_logger(), level, message)
        self._event("log", level=level, message=message)

    # ---------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        now_wall = time.monotonic()
        elapsed = max(1e-6, now_wall - self._diag_wall)
        counts = dict(self.controller.input_counts)
        rates = {n: (counts.get(n, 0) - self._counts_at_diag.get(n, 0)) / elapsed for n in counts}
        self._counts_at_diag, self._diag_wall = counts, now_wall
        status = self.controller.status(self._now())
        level = {"fault": DiagnosticStatus.ERROR}.get(status["mode"], DiagnosticStatus.OK)
        if status["mode"] in ("stand", "walk") and status["cmd_vel_timeouts"] and not self.controller.cmd_vel_fresh:
            level = DiagnosticStatus.WARN
        values = {
            "mode": status["mode"],
            "fault": status["fault"],
            "trigger": self.trigger,
            "policy": str(self.loaded.spec.run_dir),
            "provider": self.loaded.model.provider,
            "missing_joints": ",".join(status["missing_joints"]),
            **{
                k: f"{status[k]:.1f}"
                for k in ("inference_us_median", "inference_us_p99", "step_us_median", "step_us_p99")
            },
            **{k: f"{status[k]:.3f}" for k in ("period_jitter_ms_median", "period_jitter_ms_p99")},
            **{f"age_s.{n}": ("never" if a is None else f"{a:.3f}") for n, a in status["input_ages_s"].items()},
            **{f"rate_hz.{n}": f"{r:.1f}" for n, r in rates.items()},
            **{f"bad_messages.{n}": str(c) for n, c in self.guard.counts.items()},
            **{
                k: str(status[k])
                for k in (
                    "steps",
                    "faults",
                    "command_clips",
                    "joint_limit_clips",
                    "cmd_vel_timeouts",
                    "bad_messages",
                    "late_steps",
                )
            },
        }
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [
            DiagnosticStatus(
                level=level,
                name="policy_node: controller",
                message=status["mode"] + (f": {status['fault']}" if status["fault"] else ""),
                hardware_id="spot",
                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
            )
        ]
        self.diag_pub.publish(msg)


def make_executor(choice: str):
    """``single`` (default): rclpy's SingleThreadedExecutor, as on Humble. ``events``: the
    experimental EventsExecutor (Jazzy and later); ``auto`` takes it where it exists. The rclpy
    9.1 wheels' EventsExecutor busy-loops and stalls this node, so it is not the default."""
    from rclpy.executors import SingleThreadedExecutor

    if choice in ("auto", "events"):
        try:
            from rclpy.experimental import EventsExecutor

            return EventsExecutor()
        except ImportError:
            if choice == "events":
                raise ValueError("executor 'events' needs rclpy.experimental.EventsExecutor (Jazzy or later)") from None
    elif choice != "single":
        raise ValueError(f"parameter executor is '{choice}'; use auto, events or single")
    return SingleThreadedExecutor()


def main(args: list[str] | None = None) -> int:
    return run_node(
        "policy_node",
        PolicyNode,
        args,
        make_executor=lambda node: make_executor(node.get_parameter("executor").value),
    )


if __name__ == "__main__":
    sys.exit(main())
