"""``ros2 run spot_sim_bridge sim_bridge``: a simulated Spot behind the topic contract of DESIGN.md.

A thin adapter around :class:`spot_sim_bridge.core.bridge.BridgeCore`: parameters, QoS, the
stepping thread, services and diagnostics live here; every decision about commands, timeouts,
safe behaviour and the lockstep protocol lives in the core module.

Timing modes:
- ``realtime``: a thread paces physics to the wall clock (one step per physics dt, 500 Hz for Spot)
  and publishes clock and state at ``state_rate_hz``, like the robot's state stream.
- ``lockstep``: deterministic and as fast as possible. Clock and state are published once per
  control period (imu and odom before joint_states, one stamp); the next joint_command advances
  physics by exactly one control period, right in the subscription callback (no thread hand-off
  on the critical path). With no command for ``lockstep_wait_s`` wall seconds the bridge advances
  anyway under the safe behaviour, so sim time moves while the policy is idle.

The node keeps its own threads off the ROS clock: it *is* the clock (``clock``, stamps = sim time).
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension, String
from std_srvs.srv import Trigger

from spot_policy.core import contract, paths
from spot_policy.ros import cdr, qos_events
from spot_policy.ros.hot_loop import HotInputs
from spot_policy.ros.input_guard import InputGuard
from spot_policy.ros.node_main import run_node
from spot_policy.ros.node_parts import log_event, read_only
from spot_policy.ros.state_publisher import LOCKSTEP_STATE_QOS, StatePublisher, subscribe_joint_command, to_time
from spot_sim_bridge.core import ground_truth
from spot_sim_bridge.core.backend import RobotState
from spot_sim_bridge.core.bridge import (
    BACKENDS,
    BridgeConfig,
    BridgeCore,
    CommandLoss,
    LockstepAction,
    LockstepGate,
    RealtimePacer,
    SafeBehaviour,
    load_actuation,
    make_backend,
    pose_by_name,
    pose_from_text,
)
from spot_sim_bridge.core.sensors import SensorConfig
from spot_sim_bridge.core.terrain import terrain_from_params
from spot_sim_bridge.model import robot_description

NODE_NAME = "sim_bridge"
MODES = ("realtime", "lockstep")
RESET_POSE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
#: The viewer is refreshed at about this rate (wall clock), not at every physics step.
VIEWER_PERIOD_S = 1.0 / 60.0
SWITCH_INTERVAL_S = 0.0005
#: realtime, ``start_after_readers``: the longest wait for them (then it starts, saying so), how
#: often the start state goes out meanwhile, and for how long after they matched (a reader matches
#: the bridge's writer a moment after the writer matched it).
READERS_WAIT_S = 10.0
READERS_REPUBLISH_S = 0.01
READERS_GRACE_S = 0.05
#: The evaluation's topics (issue 16): latched, so a late subscriber gets the newest.
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
EVENTS_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: Deep: a recorder polling every 20 ms must not lose instants of a lockstep run far faster than real time.
GROUND_TRUTH_QOS = QoSProfile(depth=2000, reliability=ReliabilityPolicy.RELIABLE)
#: The world the simulated robot lives in and what its sensors do to the state (read-only).
WORLD_PARAMETERS: tuple[tuple[str, Any, str], ...] = (
    ("terrain", "flat", "ground: flat, slope, rough or steps (mujoco backend)"),
    ("terrain_slope_deg", 0.0, "slope: degrees, + uphill in +x"),
    ("terrain_rough_amplitude_m", 0.03, "rough: random heights within 0..this, m"),
    ("terrain_step_height_m", 0.04, "steps: height of each step, m (- down)"),
    ("terrain_step_length_m", 0.6, "steps: run of each step, m"),
    ("terrain_start_x_m", 1.0, "where the terrain starts ahead of the robot's start, m"),
    ("terrain_seed", 0, "rough: random seed"),
    ("actuator_kp_scale", 1.0, "actuator strength: the policy's kp times this"),
    ("actuator_torque_limit_scale", 1.0, "actuator strength: torque limits times this"),
    ("payload_offset", [0.0, 0.0, 0.0], "payload position from the body's COM, m (body frame)"),
    ("added_command_latency_ms", 0.0, "joint_command latency on top of command_delay_ms"),
    ("sense_seed", 0, "random seed of the sensor noise, drops and drift"),
    ("sense_noise_base_lin_vel", 0.0, "uniform noise amplitude on the odometry twist, m/s"),
    ("sense_noise_base_ang_vel", 0.0, "uniform noise amplitude on the angular velocity, rad/s"),
    ("sense_noise_projected_gravity", 0.0, "uniform tilt noise of the orientation, rad"),
    ("sense_noise_joint_pos", 0.0, "uniform noise amplitude on joint positions, rad"),
    ("sense_noise_joint_vel", 0.0, "uniform noise amplitude on joint velocities, rad/s"),
    ("imu_gyro_bias", [0.0, 0.0, 0.0], "constant gyro bias, rad/s (body frame)"),
    ("imu_tilt_bias_deg", [0.0, 0.0], "constant roll, pitch error of the orientation, deg"),
    ("velocity_bias", [0.0, 0.0, 0.0], "constant odometry velocity error, m/s (body frame)"),
    ("velocity_drift", 0.0, "random walk of the odometry velocity error, m/s per sqrt(s)"),
    ("sense_latency_ms", 0.0, "state published this late, ms"),
    ("sense_drop_probability", 0.0, "probability that a state instant is lost"),
    ("fault_nan_at_s", -1.0, "fault injection: one joint_states with a NaN at this sim time (< 0: never)"),
    ("fault_stale_topic", "", "fault injection: joint_states, imu or odom stops (empty: none)"),
    ("fault_stale_at_s", -1.0, "fault injection: sim time the stale topic stops"),
    ("fault_stale_duration_s", 0.0, "fault injection: how long it stays stopped (<= 0: to the end)"),
    ("initial_pose", "", "start (and ~/reset) in this pose: 'fl_hx=0.1,fl_kn=-1.4,...' (empty: the default pose)"),
    ("publish_ground_truth", False, "publish ~/ground_truth/odom and ~/ground_truth/joint_states (exact state)"),
    (
        "ground_truth_batch",
        0,
        "> 0: the ground truth as rows of up to this many instants on ~/ground_truth/batch instead",
    ),
    ("publish_tf", True, "publish robot_description, /tf_static and /tf (what RViz2 and Foxglove show)"),
    ("lockstep_barrier", False, "lockstep: never run past the time on ~/run_until (a harness paces the sim)"),
    (
        "initial_pose_offsets",
        [0.0] * 12,
        "start (and ~/reset) with these offsets from the default pose, rad, Isaac order",
    ),
)


def sensor_config(p: dict[str, Any]) -> SensorConfig:
    """The sensor model from the bridge's parameters."""
    return SensorConfig(
        seed=int(p["sense_seed"]),
        noise_base_lin_vel=float(p["sense_noise_base_lin_vel"]),
        noise_base_ang_vel=float(p["sense_noise_base_ang_vel"]),
        noise_projected_gravity=float(p["sense_noise_projected_gravity"]),
        noise_joint_pos=float(p["sense_noise_joint_pos"]),
        noise_joint_vel=float(p["sense_noise_joint_vel"]),
        imu_gyro_bias=tuple(float(v) for v in p["imu_gyro_bias"]),  # type: ignore[arg-type]
        imu_tilt_bias_deg=tuple(float(v) for v in p["imu_tilt_bias_deg"]),  # type: ignore[arg-type]
        velocity_bias=tuple(float(v) for v in p["velocity_bias"]),  # type: ignore[arg-type]
        velocity_drift=float(p["velocity_drift"]),
        latency_ms=float(p["sense_latency_ms"]),
        drop_probability=float(p["sense_drop_probability"]),
        fault_nan_at_s=float(p["fault_nan_at_s"]),
        fault_stale_topic=str(p["fault_stale_topic"]),
        fault_stale_at_s=float(p["fault_stale_at_s"]),
        fault_stale_duration_s=float(p["fault_stale_duration_s"]),
    )


class SimBridgeNode(Node):
    """Owns the core, the realtime stepping thread or the lockstep callbacks, services and diagnostics."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declared = self.declare_parameters(
            "",
            [
                ("policy", "spot_flat_mjx", read_only("policy whose gains/pose/rates to use (as the policy node's)")),
                ("logs_root", "", read_only("folder of Isaac Lab runs, for policy 'latest'")),
                ("backend", "mujoco", read_only(f"physics engine: {', '.join(BACKENDS)}")),
                ("asset_path", "", read_only("robot model file for the backend; empty: its own Spot")),
                ("mode", "realtime", read_only("realtime (wall clock) or lockstep (one period per command)")),
                ("state_rate_hz", 333.0, read_only("realtime: clock and state publish rate")),
                (
                    "start_after_readers",
                    0,
                    read_only("realtime: sim time stays at 0 until joint_states has this many readers (max 10 s)"),
                ),
                ("command_timeout_s", 0.1, read_only("sim seconds without joint_command before on_command_loss")),
                ("on_command_loss", "hold", read_only("hold (last targets) or limp (damping only)")),
                ("friction", 0.8, ParameterDescriptor(description="ground-robot sliding friction")),
                ("payload_kg", 0.0, ParameterDescriptor(description="mass added at the body's center of mass")),
                ("command_delay_ms", 0.0, read_only("actuator delay, 0-8 ms, rounded to physics steps")),
                ("lockstep_wait_s", 0.2, ParameterDescriptor(description="lockstep: wall s to wait for a command")),
                ("push_velocity", [0.0, 0.5, 0.0], ParameterDescriptor(description="~/push kick, m/s world")),
                ("diagnostics_period_s", 1.0, read_only("diagnostics period (wall clock)")),
                ("gui", False, read_only("open the MuJoCo viewer when a display exists")),
                *((name, default, read_only(text)) for name, default, text in WORLD_PARAMETERS),
            ],
        )
        p = {param.name: param.value for param in declared}
        self.mode = str(p["mode"])
        if self.mode not in MODES:
            raise ValueError(f"parameter mode is '{self.mode}'; use one of {', '.join(MODES)}")
        if str(p["backend"]) not in BACKENDS:
            raise ValueError(f"parameter backend is '{p['backend']}'; available: {', '.join(BACKENDS)}")
        if str(p["on_command_loss"]) not in {c.value for c in CommandLoss}:
            raise ValueError(f"parameter on_command_loss is '{p['on_command_loss']}'; use hold or limp")
        self._push_velocity = self._check_push_velocity(p["push_velocity"])
        self._start_after_readers = int(p["start_after_readers"])
        if self._start_after_readers < 0:
            raise ValueError(f"parameter start_after_readers is {self._start_after_readers}; use 0 (none) or more")

        actuation = load_actuation(
            str(p["policy"]), logs_root=p["logs_root"] or None, policies_dir=paths.config_dir() / "policies"
        )
        backend = make_backend(
            str(p["backend"]),
            actuation.physics_dt,
            friction=float(p["friction"]),
            payload_kg=float(p["payload_kg"]),
            asset_path=str(p["asset_path"]) or None,
            terrain=terrain_from_params(p),
            env_yaml=actuation.source or None,
        )
        config = BridgeConfig(
            command_timeout_s=float(p["command_timeout_s"]),
            on_command_loss=CommandLoss(str(p["on_command_loss"])),
            command_delay_ms=float(p["command_delay_ms"]),
            state_rate_hz=float(p["state_rate_hz"]),
            added_command_latency_ms=float(p["added_command_latency_ms"]),
            kp_scale=float(p["actuator_kp_scale"]),
            torque_limit_scale=float(p["actuator_torque_limit_scale"]),
            payload_offset=tuple(float(v) for v in p["payload_offset"]),  # type: ignore[arg-type]
            sensors=sensor_config(p),
        )
        self.events_pub = self.create_publisher(String, "~/events", EVENTS_QOS)
        self._lock = threading.Lock()  # serializes every use of the core (stepping thread, callbacks)
        self.core = BridgeCore(backend, actuation, config, self._on_event)
        offsets = [float(v) for v in p["initial_pose_offsets"]]
        if len(offsets) != len(contract.ISAAC_JOINT_ORDER) or not all(math.isfinite(v) for v in offsets):
            raise ValueError(
                f"parameter initial_pose_offsets must be 12 finite numbers (rad, Isaac order), got {offsets}"
            )
        initial_pose: dict[str, float] | None = None
        if any(offsets):  # set down off the default pose before anything is published (a harness's start)
            default = actuation.default_pose()
            initial_pose = {n: default[n] + o for n, o in zip(contract.ISAAC_JOINT_ORDER, offsets, strict=True)}
            self.core.reset(initial_pose)
        self.backend_name = str(p["backend"])

        self.clock_pub = self.create_publisher(
            ClockMsg, contract.TOPIC_CLOCK, 10, event_callbacks=qos_events.internal_publisher()
        )
        self.state_out = StatePublisher(
            self,
            self.core.backend.joint_names,
            robot_description() if bool(p["publish_tf"]) else None,
            qos=LOCKSTEP_STATE_QOS if self.mode == "lockstep" else qos_profile_sensor_data,
        )
        self.diag_pub = self.create_publisher(
            DiagnosticArray, contract.TOPIC_DIAGNOSTICS, 10, event_callbacks=qos_events.internal_publisher()
        )
        self._partial_imu = cdr.ImuEncoder(contract.FRAME_BASE)
        self._partial_odom = cdr.OdometryEncoder(contract.FRAME_ODOM, contract.FRAME_BASE)
        self._partial_joints = cdr.JointStateEncoder([str(n) for n in self.core.backend.joint_names])
        self._zeros = np.zeros(len(self.core.backend.joint_names))
        self._ground_truth: tuple[Any, Any, Any] | None = None
        self._truth_batch: ground_truth.GroundTruthBatch | None = None
        batch = int(p["ground_truth_batch"])
        if batch < 0:
            raise ValueError(f"parameter ground_truth_batch is {batch}; fix: 0 (a message per instant) or more")
        if bool(p["publish_ground_truth"]) and batch > 0:
            self._truth_batch = ground_truth.GroundTruthBatch(batch, self.core.backend.joint_names)
            self._batch_pub = self.create_publisher(Float64MultiArray, "~/ground_truth/batch", GROUND_TRUTH_QOS)
            self._batch_msg = Float64MultiArray()
            self._batch_msg.layout.dim = [
                MultiArrayDimension(label="instant", size=0, stride=0),
                MultiArrayDimension(
                    label=",".join(ground_truth.FIELDS), size=ground_truth.WIDTH, stride=ground_truth.WIDTH
                ),
            ]
        elif bool(p["publish_ground_truth"]):
            self._ground_truth = (
                self.create_publisher(Odometry, "~/ground_truth/odom", GROUND_TRUTH_QOS),
                self.create_publisher(JointState, "~/ground_truth/joint_states", GROUND_TRUTH_QOS),
                self.create_publisher(JointState, "~/ground_truth/joint_targets", GROUND_TRUTH_QOS),
            )
        # lockstep_barrier: a harness (the evaluation) sets how far the sim may run; held there
        # with a step owed, the bridge says so on ~/held and waits for a later ~/run_until.
        self._barrier = bool(p["lockstep_barrier"]) and self.mode == "lockstep"
        self._run_until_ns = 0
        self._owed_step = False
        self._held_ns: int | None = None
        self._period_ns = round(actuation.control_dt * 1e9)
        if self._barrier:
            self.held_pub = self.create_publisher(ClockMsg, "~/held", LATCHED_QOS)
            self.create_subscription(ClockMsg, "~/run_until", self._on_run_until, LATCHED_QOS)
        # lockstep: the node waits on joint_command itself (spot_policy.ros.hot_loop), the executor
        # catches up on services and timers in between; realtime: the executor delivers it.
        self.guard = InputGuard(self.get_logger().warning)  # joint_command payloads it cannot read
        self._command_input = subscribe_joint_command(self, self._on_command, self.guard, hot=self.mode == "lockstep")
        self.create_subscription(JointState, "~/reset_pose", self._on_reset_pose, RESET_POSE_QOS)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(Trigger, "~/push", self._on_push)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._reset_pose: dict[str, float] | None = initial_pose
        try:
            initial = pose_from_text(str(p["initial_pose"]))
        except ValueError as exc:
            raise ValueError(f"parameter initial_pose: {exc}; fix: joint=radians pairs, e.g. fl_kn=-1.4") from None
        if initial:  # a replay in sim starts where the logged robot stood (spot-policy replay --in-sim)
            self._reset_pose = initial
            self.core.reset(initial)
        self._last_injected = ""
        self._diag_at = (time.monotonic(), self.core.sim_time, 0)
        self._viewer = self._open_viewer(bool(p["gui"]))
        self._viewer_synced = 0.0
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(float(p["diagnostics_period_s"]), self._publish_diagnostics, clock=steady)

        # realtime: a thread paces physics to the wall clock. lockstep: everything runs in the
        # node's thread (a command arrives -> step -> publish), with a wall timer for waits.
        self.pacer: RealtimePacer | None = None
        self.gate: LockstepGate | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.mode == "realtime":
            self.pacer = RealtimePacer(self.core.physics_dt)
            self._thread = threading.Thread(target=self._run_realtime, name="sim_bridge_realtime", daemon=True)
            self._thread.start()
        else:
            self.gate = LockstepGate(float(p["lockstep_wait_s"]))
            self._wait_timer = self.create_timer(self.gate.timer_period_s, self._on_lockstep_timer, clock=steady)
            with self._lock:
                self._publish_lockstep()
        kp, kd = actuation.kp, actuation.kd
        spec_note = f"kp {kp.min():g}-{kp.max():g}, kd {kd.min():g}-{kd.max():g}"
        self.get_logger().info(
            f"{self.backend_name} {self.mode}: physics {1.0 / self.core.physics_dt:.0f} Hz, control period "
            f"{actuation.control_dt * 1e3:g} ms, gains from {actuation.source} ({spec_note}), command delay "
            f"{self.core.command_delay_steps} steps, on command loss: {config.on_command_loss.value}; "
            "holding the reset pose until the first joint_command"
        )

    # ---------------------------------------------------------------- realtime
    def _run_realtime(self) -> None:
        """The stepping thread: physics at the wall clock, state at state_rate_hz of sim time.

        Ends quietly when ROS shuts down under it (Ctrl-C, SIGTERM).
        """
        try:
            self._pace()
        except Exception as exc:
            if not self.context.ok() or self._stop.is_set():
                return
            self.get_logger().fatal(f"realtime stepping thread died: {type(exc).__name__}: {exc}")
            raise

    def _pace(self) -> None:
        assert self.pacer is not None
        with self._lock:
            if self.core.state_due():
                self._publish_state()
        self._await_readers()
        self.pacer.restart()
        while not self._stop.is_set() and self.context.ok():
            due = self.pacer.wait()
            for _ in range(due):
                with self._lock:
                    self.core.step_physics(1)
                    if self.core.state_due():
                        self._publish_state()
            self._sync_viewer()

    def _await_readers(self) -> None:
        """Hold sim time at 0 until joint_states has ``start_after_readers`` readers, the start state
        republished meanwhile: a recorder and a policy node started with the bridge then have the run
        from its first instant (the robot settles onto the ground within the first 0.1 s)."""
        wanted = self._start_after_readers
        if wanted <= 0:
            return
        publisher = self.state_out.joint_states_pub
        started, matched = time.monotonic(), None
        while not self._stop.is_set() and self.context.ok():
            now = time.monotonic()
            if matched is None and publisher.get_subscription_count() >= wanted:
                matched = now
            if matched is not None and now - matched >= READERS_GRACE_S:
                return
            if matched is None and now - started >= READERS_WAIT_S:
                self.get_logger().warning(
                    f"start_after_readers: {publisher.get_subscription_count()} of {wanted} joint_states readers "
                    f"after {READERS_WAIT_S:g} s; starting anyway"
                )
                return
            time.sleep(READERS_REPUBLISH_S)
            with self._lock:
                self._publish_state()

    # ---------------------------------------------------------------- lockstep
    def _publish_lockstep(self) -> None:
        """Publish the state the policy must answer next; restarts the wait (call with the lock held)."""
        assert self.gate is not None
        while not self._publish_state():  # a lost instant: no answer comes, the last targets stay
            if not self._may_step():
                self._hold()
                return
            self.core.lockstep_step()
        self.gate.published(time.monotonic())
        self._wait_timer.reset()
        self._sync_viewer(locked=True)

    def _lockstep_command(self, names: tuple[str, ...], positions: np.ndarray) -> None:
        assert self.gate is not None
        with self._lock:
            if self.gate.command(time.monotonic()) is LockstepAction.STEP:
                self.core.command(names, positions)
                if not self._may_step():
                    self._hold()
                    return
                self.core.lockstep_step()
            self._publish_lockstep()  # (a command answering a pre-reset state is dropped)

    def _on_lockstep_timer(self) -> None:
        """No command for lockstep_wait_s: advance anyway under the safe behaviour (or finish a reset)."""
        assert self.gate is not None
        with self._lock:
            if self._owed_step:
                return  # held at the barrier
            action = self.gate.timer(time.monotonic())
            if action is LockstepAction.STEP and self._barrier and self.core.command_age_s is None:
                action = LockstepAction.PUBLISH  # under a barrier sim time waits for the first command
            if action is LockstepAction.STEP:
                if not self._may_step():
                    self._hold()
                    return
                self.core.lockstep_step()
            if action is not LockstepAction.NOTHING:
                self._publish_lockstep()
            if action is LockstepAction.PUBLISH:
                self._flush_ground_truth()  # the bridge waits here: its harness gets the state now

    def _may_step(self) -> bool:
        return not self._barrier or self.core.sim_time_ns + self._period_ns <= self._run_until_ns

    def _hold(self) -> None:
        """At the barrier with a step owed: say so once on ~/held (call with the lock held)."""
        self._owed_step = True
        self._flush_ground_truth()  # the harness that sees ~/held has every instant up to it
        now_ns = self.core.sim_time_ns
        if self._held_ns != now_ns:
            self._held_ns = now_ns
            self.held_pub.publish(ClockMsg(clock=to_time(now_ns)))

    def _on_run_until(self, msg: ClockMsg) -> None:
        with self._lock:
            self._run_until_ns = max(self._run_until_ns, msg.clock.sec * 1_000_000_000 + msg.clock.nanosec)
            if self._owed_step and self._may_step():
                self._owed_step = False
                self.core.lockstep_step()
                self._publish_lockstep()

    # ---------------------------------------------------------------- publishing
    def _publish_state(self) -> bool:
        """Clock, imu, odom, then joint_states, one stamp (an input-triggered policy waits for all three),
        as the robot's sensors report them; False when the sensors lost this instant."""
        truth: RobotState = self.core.state()
        stamp_ns = self.core.sim_time_ns
        self.clock_pub.publish(cdr.encode_clock(stamp_ns))
        if self._truth_batch is not None:
            w, x, y, z = truth.base_quat
            self._truth_batch.add(
                stamp_ns, truth.base_pos, (x, y, z, w), truth.base_lin_vel_body, truth.base_ang_vel_body,
                truth.q, truth.dq, truth.tau, self.core.last_targets,
            )  # fmt: skip
            if self._truth_batch.full:
                self._flush_ground_truth()
        elif self._ground_truth is not None:
            w, x, y, z = truth.base_quat
            odom_pub, joints_pub, targets_pub = self._ground_truth
            odom_pub.publish(
                self._partial_odom(
                    stamp_ns, truth.base_pos, (x, y, z, w), truth.base_lin_vel_body, truth.base_ang_vel_body
                )
            )
            joints_pub.publish(self._partial_joints(stamp_ns, truth.q, truth.dq, truth.tau))
            targets = self.core.last_targets
            if targets is not None:  # the targets in force (position; velocity and effort 0)
                targets_pub.publish(self._partial_joints(stamp_ns, targets, self._zeros, self._zeros))
        if self.core.sensors.exact:
            state, topics = truth, None
        else:
            sensed = self.core.sensed(truth)
            if sensed.injected and sensed.injected != self._last_injected:
                self._on_event("warn", f"fault injected: {sensed.injected} at {stamp_ns * 1e-9:.3f} s")
            self._last_injected = sensed.injected
            if sensed.dropped:
                return False
            state, topics = sensed.state, sensed.publish
        w, x, y, z = state.base_quat
        if topics is None or len(topics) == 3:
            self.state_out.publish(
                stamp_ns,
                (x, y, z, w),
                state.base_ang_vel_body,
                state.imu_lin_acc,
                state.base_pos,
                state.base_lin_vel_body,
                state.q,
                state.dq,
                state.tau,
            )
            return True
        out = self.state_out  # a stale-input fault: the instant without one topic
        if "imu" in topics:
            out.imu_pub.publish(self._partial_imu(stamp_ns, (x, y, z, w), state.base_ang_vel_body, state.imu_lin_acc))
        if "odom" in topics:
            odom = self._partial_odom(
                stamp_ns, state.base_pos, (x, y, z, w), state.base_lin_vel_body, state.base_ang_vel_body
            )
            out.odom_pub.publish(odom)
        if "joint_states" in topics:
            out.joint_states_pub.publish(self._partial_joints(stamp_ns, state.q, state.dq, state.tau))
        return True

    def _flush_ground_truth(self) -> None:
        """Publish the ground-truth rows collected so far, if any (call with the lock held)."""
        if self._truth_batch is None or not self._truth_batch.size:
            return
        msg = self._batch_msg
        msg.layout.dim[0].size = self._truth_batch.size
        msg.layout.dim[0].stride = self._truth_batch.size * ground_truth.WIDTH
        msg.data = self._truth_batch.take()
        self._batch_pub.publish(msg)

    # ---------------------------------------------------------------- inputs
    def hot_inputs(self) -> HotInputs | None:
        """lockstep: joint_command, for run_node's HotLoop (realtime: None, the executor's). A wait
        for an answer ends on time, not at the loop's next catch-up (5 ms): a silent policy's
        lockstep_wait_s of 1 ms is 1 ms a step."""
        if self.mode != "lockstep":
            return None
        command = self._command_input

        def on_ready() -> None:
            command.on_ready()
            self._on_lockstep_timer()  # acts only once the wait ran out, as the timer does

        return HotInputs(command.subscriptions, on_ready, due=self._lockstep_due)

    def _lockstep_due(self) -> float:
        """When the lockstep wait runs out (inf while held at the barrier: only ~/run_until moves it)."""
        assert self.gate is not None
        return math.inf if self._owed_step else self.gate.due()

    def _on_command(self, names: tuple[str, ...], positions: np.ndarray) -> None:
        if self.gate is not None:
            self._lockstep_command(names, positions)
        else:
            with self._lock:
                self.core.command(names, positions)

    def _on_reset_pose(self, msg: JointState) -> None:
        try:
            pose = pose_by_name(msg.name, msg.position)
        except ValueError as exc:
            self.get_logger().error(f"~/reset_pose ignored ({exc}); keeping the previous reset pose")
            return
        self._reset_pose = pose or None
        self.get_logger().info(f"~/reset_pose: {len(pose)} joints set; ~/reset now resets to it")

    # ---------------------------------------------------------------- services and parameters
    def _on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            try:
                response.message = self.core.reset(self._reset_pose)
                response.success = True
            except ValueError as exc:
                response.success, response.message = False, f"reset refused: {exc}"
                return response
            # lockstep: the policy answers the reset state (at once, or in place of its answer
            # to the state it is working on); realtime: the next state is due within milliseconds.
            if self.gate is not None and self.gate.reset(time.monotonic()) is LockstepAction.PUBLISH:
                self._publish_lockstep()
        return response

    def _on_push(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        kick = self._push_velocity
        with self._lock:
            self.core.push(kick)
        response.success = True
        response.message = f"pushed the base by [{kick[0]:g}, {kick[1]:g}, {kick[2]:g}] m/s (world frame)"
        self.get_logger().info(response.message)
        return response

    @staticmethod
    def _check_push_velocity(value: Any) -> list[float]:
        kick = [float(v) for v in value]
        if len(kick) != 3 or not all(math.isfinite(v) for v in kick):
            raise ValueError(f"parameter push_velocity must be 3 finite numbers [vx, vy, vz] m/s, got {value}")
        return kick

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """friction, payload_kg, push_velocity and lockstep_wait_s change at runtime; others are read-only."""
        by_name = {p.name: p.value for p in params}
        if "lockstep_wait_s" in by_name and self.gate is not None:
            wait = float(by_name["lockstep_wait_s"])
            if not math.isfinite(wait):
                return SetParametersResult(successful=False, reason=f"lockstep_wait_s must be finite, got {wait}")
            with self._lock:
                self.gate.wait_s = wait
                self._wait_timer.timer_period_ns = round(self.gate.timer_period_s * 1e9)
                self._wait_timer.reset()
        try:
            push = self._check_push_velocity(by_name["push_velocity"]) if "push_velocity" in by_name else None
            friction = by_name.get("friction")
            if friction is not None and not (math.isfinite(friction) and friction >= 0.0):
                raise ValueError(f"friction must be finite and >= 0, got {friction}")
            with self._lock:
                if "payload_kg" in by_name:
                    self.core.set_payload(float(by_name["payload_kg"]))  # ValueError if the body gets massless
                if friction is not None:
                    self.core.set_friction(float(friction))
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if push is not None:
            self._push_velocity = push
        changed = ", ".join(f"{k}={v}" for k, v in by_name.items() if k in ("friction", "payload_kg", "push_velocity"))
        if changed:
            self.get_logger().info(f"set {changed}")
        return SetParametersResult(successful=True)

    def _on_event(self, level: str, message: str) -> None:
        log_event(self.get_logger(), level, message)
        publisher = getattr(self, "events_pub", None)
        if publisher is not None:  # sim-time stamped, for recordings (the evaluation's safety checks)
            record = {"t_ns": self.core.sim_time_ns if hasattr(self, "core") else 0, "level": level, "message": message}
            if hasattr(self, "core"):
                record["safe_behaviour"] = self.core.safe.value
            publisher.publish(String(data=json.dumps(record)))

    # ---------------------------------------------------------------- viewer
    def _open_viewer(self, gui: bool) -> Any:
        if not gui:
            return None
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            self.get_logger().info("gui: no display (DISPLAY unset): running headless")
            return None
        model, data = (getattr(self.core.backend, n, None) for n in ("mj_model", "mj_data"))
        if model is None or data is None:
            self.get_logger().info(f"gui: the {self.backend_name} backend has no MuJoCo viewer: running headless")
            return None
        try:
            import mujoco.viewer

            from spot_sim_bridge.backends.mujoco_viewer import follow_robot

            viewer = mujoco.viewer.launch_passive(model, data)
            with viewer.lock():
                follow_robot(viewer.cam, model)  # the camera follows Spot as it walks away
            return viewer
        except Exception as exc:  # no GLFW, a GL context that cannot be made: headless is still useful
            self.get_logger().warning(f"gui: cannot open the MuJoCo viewer ({exc}): running headless")
            return None

    def _sync_viewer(self, locked: bool = False) -> None:
        """Refresh the viewer at about 60 Hz of wall time (``locked``: the caller holds the lock)."""
        if self._viewer is None:
            return
        now = time.monotonic()
        if now - self._viewer_synced < VIEWER_PERIOD_S:
            return
        self._viewer_synced = now
        if not self._viewer.is_running():
            self._viewer = None
            return
        if locked:
            self._viewer.sync()
        else:
            with self._lock:
                self._viewer.sync()

    # ---------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        with self._lock:
            status = self.core.status()
            published = self.state_out.published
            self._flush_ground_truth()  # batched ground truth is never older than this period
        wall = time.monotonic()
        wall0, sim0, published0 = self._diag_at
        elapsed = max(1e-6, wall - wall0)
        self._diag_at = (wall, float(status["sim_time"]), published)
        age = status["command_age_s"]
        values: dict[str, object] = {
            "mode": self.mode,
            "backend": self.backend_name,
            "policy": self.core.actuation.source,
            "sim_time_s": f"{status['sim_time']:.3f}",
            "real_time_factor": f"{(float(status['sim_time']) - sim0) / elapsed:.3f}",
            "state_rate_hz": f"{(published - published0) / elapsed:.1f}",
            "command_age_s": "never" if age is None else f"{age:.3f}",
            "safe_behaviour": status["safe_behaviour"],
            "safe_behaviour_active": str(status["safe_active"]).lower(),
            "safe_behaviour_reason": status["safe_reason"],
            "commands": status["commands"],
            "rejected_commands": status["rejected_commands"],
            "last_rejection": status["last_rejection"],
            "command_losses": status["command_losses"],
            "command_delay_steps": status["command_delay_steps"],
            "friction": self.get_parameter("friction").value,
            "payload_kg": self.get_parameter("payload_kg").value,
        }
        if self.gate is not None:
            values["stale_commands_dropped"] = self.gate.stale_dropped
        values["bad_messages.joint_command"] = self.guard.counts.get("joint_command", 0)
        if self.pacer is not None:
            jitter = self.pacer.period_jitter_s
            values["period_jitter_ms_median"] = f"{jitter.median * 1e3:.3f}"
            values["period_jitter_ms_p99"] = f"{jitter.p99 * 1e3:.3f}"
            values["dropped_steps"] = self.pacer.dropped_steps
        lost = status["safe_behaviour"] in (SafeBehaviour.HOLD.value, SafeBehaviour.LIMP.value)
        msg = DiagnosticArray()
        msg.header.stamp = to_time(self.core.sim_time_ns)
        msg.status = [
            DiagnosticStatus(
                level=DiagnosticStatus.WARN if lost else DiagnosticStatus.OK,
                name=f"{NODE_NAME}: simulation",
                message=str(status["safe_reason"]) or "following joint_command",
                hardware_id=f"spot ({self.backend_name})",
                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
            )
        ]
        self.diag_pub.publish(msg)

    # ---------------------------------------------------------------- lifecycle
    def destroy_node(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
        close = getattr(self.core.backend, "close", None)
        if callable(close):
            close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    # The realtime thread must get the GIL back within a fraction of a physics step when its
    # sleep ends; Python's default hand-off interval (5 ms) would make it late by up to 2.5 steps.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    return run_node(NODE_NAME, SimBridgeNode, args)


if __name__ == "__main__":
    sys.exit(main())
