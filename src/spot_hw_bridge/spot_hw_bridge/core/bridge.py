"""The robot bridge's core: start-up sequence, joint command streaming, watchdogs. No ROS here.

The node (``hw_bridge_node``) only moves messages in and out; this module owns every exchange
with the robot through bosdyn-client, and every safety rule. Phases::

    STARTING -> READY <-> ACTIVE        READY:  the robot's own stand holds Spot (the safe state)
                  |          |          ACTIVE: joint control, one JointControlStreamRequest per
                  v          v                  state message with the latest joint_command
                 SAFE     FAULTED       SAFE:   safely powered off after a loss (on_command_loss)
                                        FAULTED: cannot continue (lease lost, E-Stop, no licence)

Start-up (each step a check with a one-line error if it fails, see :mod:`errors`): authenticate,
time sync, licence, robot state (joint names, battery, power), E-Stop (optionally our own endpoint
with keep-alive), lease with keep-alive, power on, stand, state stream. Joint control is activated
when the first fresh joint_command arrives: the command stream starts, then the RobotCommand
``joint_command`` activates it (the order Boston Dynamics' examples use).

Safe behaviour: joint_command older than ``command_timeout_s``, the state stream silent for
``state_timeout_s``, state older than ``max_latency_s`` (link latency), the stream ended by the
robot: stop streaming at once and command a stand (or a safe power-off, ``on_command_loss``).
Shutdown does the same, then returns the lease. ``end_time`` of every command is the robot's
clock now + ``command_ttl_s``, so a stalled bridge leaves the robot to its own safety behaviour.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from spot_hw_bridge.core.conversion import (
    CommandMapper,
    Gains,
    StateSample,
    StreamLayout,
    joint_request,
    sample_from_stream,
)
from spot_hw_bridge.core.errors import BridgeError, Credentials, Redactor, describe, explain, install_log_redaction
from spot_policy.core import contract
from spot_policy.core.controller import hand_over_target
from spot_policy.core.stats import Rolling

Event = Callable[[str, str], None]  # (level: "info" | "warn" | "error", message)
StateSink = Callable[[StateSample, int], None]  # (sample, local stamp ns)

_LOGGER = logging.getLogger(__name__)


class CommandLoss(str, Enum):
    """What the robot does when joint_command stops (parameter ``on_command_loss``)."""

    STAND = "stand"
    POWER_OFF = "power_off"


class Phase(str, Enum):
    STARTING = "starting"
    READY = "ready"
    ACTIVE = "active"
    SAFE = "safe"
    FAULTED = "faulted"
    STOPPED = "stopped"


@dataclass(frozen=True)
class HwBridgeConfig:
    hostname: str
    port: int = 443
    ca_cert: str = ""  # PEM of the robot's CA; empty: the SDK's bundled Boston Dynamics CA
    command_ttl_s: float = 0.1  # end_time = robot clock now + this
    command_timeout_s: float = 0.1  # joint_command older than this -> safe behaviour
    on_command_loss: CommandLoss = CommandLoss.STAND
    own_estop: bool = False
    estop_timeout_s: float = 9.0
    state_timeout_s: float = 0.1  # no state message for this long -> safe behaviour
    max_latency_s: float = 0.05  # state older than this (robot clock) -> safe behaviour
    recovery_s: float = 1.0  # after a link fault or a command loss: no re-activation for this long
    handover_s: float = 0.2  # each activation blends from the robot's hand-over target q* to joint_command
    time_sync_timeout_s: float = 5.0
    connect_timeout_s: float = 10.0
    power_on_timeout_s: float = 20.0
    stand_timeout_s: float = 10.0
    min_battery_percent: float = 10.0
    lease_retain_interval_s: float = 0.5
    monitor_period_s: float = 0.1
    client_name: str = "spot_hw_bridge"

    def validated(self) -> HwBridgeConfig:
        """``ValueError`` naming the first bad value."""
        if not self.hostname:
            raise ValueError("no robot address: set the parameter hostname (or the environment variable SPOT_IP)")
        if not 0 < int(self.port) < 65536:
            raise ValueError(f"port must be 1-65535, got {self.port}")
        for name in ("command_ttl_s", "command_timeout_s", "state_timeout_s", "max_latency_s", "time_sync_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")
        CommandLoss(self.on_command_loss)
        if self.ca_cert and not Path(self.ca_cert).is_file():
            raise ValueError(
                f"ca_cert {self.ca_cert} is not a file; leave it empty for a real Spot, or give the emulator's ca.pem"
            )
        return self


class HwBridge:
    """One robot behind the bridge's rules. Thread-safe: the node calls it from any thread."""

    #: State must stay later than max_latency_s over this much robot time before the link counts as
    #: slow: a scheduling hiccup delivers a backlog whose ages fall off within it, a slow link does not.
    LATENCY_WINDOW_NS = 30_000_000

    def __init__(
        self,
        config: HwBridgeConfig,
        gains: Gains,
        credentials: Credentials,
        on_state: StateSink | None = None,
        on_event: Event | None = None,
    ) -> None:
        self.config = config.validated()
        self.gains = gains
        self._credentials = credentials
        self.redactor = Redactor(credentials.username, credentials.password)
        install_log_redaction(self.redactor, config.client_name)
        self._on_state: StateSink = on_state or (lambda sample, stamp: None)
        self._emit_raw: Event = on_event or (lambda level, message: None)
        self._mapper = CommandMapper()

        self._lock = threading.RLock()
        self._phase = Phase.STARTING
        self._reason = "starting up"
        self.fault: BridgeError | None = None
        self.transitions: deque[tuple[float, str, str]] = deque(maxlen=200)  # (monotonic, phase, reason)
        self._stopping = threading.Event()
        self._wake = threading.Event()

        self._targets: np.ndarray | None = None
        self._target_time = -math.inf
        self._commands_flowing = False  # joint_commands arrive and no command loss was reported since
        self._skew_ns = 0
        self._layout: StreamLayout | None = None

        self._robot = None
        self._clients: dict[str, object] = {}
        self._lease_keepalive = None
        self._estop_keepalive = None
        self._estop_endpoint = None
        self._powered_by_us = False

        self._state_thread: threading.Thread | None = None
        self._state_call = None
        self._first_state = threading.Event()
        self._last_sample: StateSample | None = None
        self._last_state_mono = -math.inf
        self._late_since: int | None = None  # acquisition time of the first of a run of late messages
        self._hold_until = 0.0
        self._link_fault_reported = False

        self._stream_queue: queue.SimpleQueue | None = None
        self._stream_generation = 0
        self._stream_thread: threading.Thread | None = None
        self._first_sent = threading.Event()
        self._send_gains = False
        self._handover: tuple[np.ndarray, int] | None = None  # (robot's q*, its acquisition ns)
        self._key = 0
        self._sent: dict[int, int] = {}  # key -> acquisition time (robot ns) of the state it answered
        self._pending_action: str | None = None  # "stand" | "power_off" | "activate"
        self._supervisor: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._monitor: threading.Thread | None = None
        self.preflight: dict[str, str] = {}
        self.lease_returned = False
        self._lease_root: tuple[str, int] | None = None

        self.stats = {
            "states": 0,
            "commands_sent": 0,
            "joint_commands": 0,
            "rejected_commands": 0,
            "command_losses": 0,
            "link_faults": 0,
            "activations": 0,
            "stream_restarts": 0,
        }
        self.state_to_send_s = Rolling(2000)  # state message received -> command handed to gRPC (client)
        self.loop_latency_s = Rolling(2000)  # state acquired -> command received (robot clock, both ends)
        self.state_age_s = Rolling(2000)  # robot clock now - acquisition time, at arrival
        self.last_rejection = ""

    # ------------------------------------------------------------------ public
    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def robot(self):
        return self._robot

    @property
    def command_age_s(self) -> float | None:
        age = time.monotonic() - self._target_time
        return None if not math.isfinite(age) else age

    def start(self) -> None:
        """Run the start-up sequence (blocking); ``BridgeError`` if it fails, the robot left safe."""
        stage = "connect"
        try:
            for stage, step in (
                ("connect", self._connect),
                ("auth", self._authenticate),
                ("time_sync", self._time_sync),
                ("licence", self._check_licence),
                ("robot_state", self._check_robot_state),
                ("estop", self._check_estop),
                ("lease", self._acquire_lease),
                ("power_on", self._power_on),
                ("stand", self._stand_up),
                ("state_stream", self._start_state_stream),
                ("stand_loads", self._check_stand_loads),
            ):
                if self.fault is not None:  # a keep-alive reported a loss meanwhile (the lease, ...)
                    raise self.fault
                if self._stopping.is_set():
                    raise BridgeError(
                        "start-up interrupted by a shutdown request", "restart the bridge", kind="stopped"
                    )
                self._set_phase(Phase.STARTING, f"start-up: {stage.replace('_', ' ')}")
                step()
            if self.fault is not None:
                raise self.fault
        except Exception as exc:
            # The first cause counts: a loss reported during a step explains that step's failure.
            error = self.fault or self._clean(explain(exc, stage, self.config.hostname, self.config.port))
            self.fault = error
            self._set_phase(Phase.FAULTED, str(error))
            # It never left the safe state; if it powered the motors, it sits down and powers off again.
            self._release("power_off" if self._powered_by_us else None)
            raise error from None
        self._supervisor = threading.Thread(target=self._supervise, name="hw_bridge_supervisor", daemon=True)
        self._watchdog = threading.Thread(target=self._watch_timeouts, name="hw_bridge_watchdog", daemon=True)
        self._monitor = threading.Thread(target=self._watch_robot, name="hw_bridge_monitor", daemon=True)
        for thread in (self._supervisor, self._watchdog, self._monitor):
            thread.start()
        self._set_phase(Phase.READY, "standing (the robot's own stand); joint control starts with a joint_command")
        self._emit("info", f"ready: {self._reason}")

    def command(self, names: Sequence[str], positions: Sequence[float]) -> bool:
        """The latest joint_command; False (counted, logged once per reason) if unusable."""
        try:
            targets = self._mapper.positions(names, positions)
        except ValueError as exc:
            self.stats["rejected_commands"] += 1
            if str(exc) != self.last_rejection:
                self.last_rejection = str(exc)
                self._emit(
                    "error",
                    f"joint_command rejected ({exc}); keeping the previous target; fix: publish all 12 leg joints "
                    "by name (fl_hx ... hr_kn) with finite positions",
                )
            return False
        with self._lock:
            self._targets = targets
            self._target_time = time.monotonic()
            self._commands_flowing = True
            self.stats["joint_commands"] += 1
            if self._phase is Phase.READY and self._pending_action is None and time.monotonic() >= self._hold_until:
                self._pending_action = "activate"
                self._wake.set()
        return True

    def stop(self) -> None:
        """Shut down: stop streaming, the safe behaviour, return the lease. Idempotent."""
        if self._phase is Phase.STOPPED:
            return
        self._stopping.set()
        self._wake.set()
        was = self._phase
        self._end_stream()
        for thread in (self._supervisor, self._watchdog, self._monitor):
            if thread is not None and thread.is_alive():
                thread.join(timeout=3.0)
        action = None
        if was in (Phase.READY, Phase.ACTIVE):
            # An own E-Stop endpoint stops checking in when the bridge ends and would cut power
            # under a standing robot: sit down and power off first.
            if self.config.own_estop or self.config.on_command_loss is CommandLoss.POWER_OFF:
                action = "power_off"
            elif was is Phase.ACTIVE:
                action = "stand"
        self._release(action)
        self._set_phase(Phase.STOPPED, "stopped")

    def status(self) -> dict[str, object]:
        age = self.command_age_s
        state_gap = time.monotonic() - self._last_state_mono
        return {
            "phase": self._phase.value,
            "reason": self._reason,
            "safe_active": self._phase is not Phase.ACTIVE,
            "fault": "" if self.fault is None else str(self.fault),
            "command_age_s": age,
            "state_gap_s": state_gap if math.isfinite(state_gap) else None,
            "clock_skew_s": self._skew_ns * 1e-9,
            "last_rejection": self.last_rejection,
            **self.stats,
        }

    # ------------------------------------------------------------------ start-up steps
    def _connect(self) -> None:
        import bosdyn.client
        from bosdyn.client.robot_command import RobotCommandStreamingClient
        from bosdyn.client.robot_state import RobotStateStreamingClient

        sdk = bosdyn.client.create_standard_sdk(self.config.client_name)
        sdk.register_service_client(RobotCommandStreamingClient)
        sdk.register_service_client(RobotStateStreamingClient)
        if self.config.ca_cert:
            sdk.load_robot_cert(self.config.ca_cert)
        robot = sdk.create_robot(self.config.hostname)
        robot.update_secure_channel_port(int(self.config.port))
        self._sdk, self._robot = sdk, robot

    def _authenticate(self) -> None:
        self._robot.authenticate(
            self._credentials.username, self._credentials.password, timeout=self.config.connect_timeout_s
        )
        from bosdyn.client.robot_id import RobotIdClient

        robot_id = self._robot.ensure_client(RobotIdClient.default_service_name).get_id(
            timeout=self.config.connect_timeout_s
        )
        version = robot_id.software_release.version
        self.preflight["robot"] = f"{robot_id.nickname or robot_id.serial_number} ({robot_id.species})"
        self.preflight["software"] = f"{version.major_version}.{version.minor_version}.{version.patch_level}"
        self._make_clients()

    def _time_sync(self) -> None:
        self._robot.time_sync.wait_for_sync(timeout_sec=self.config.time_sync_timeout_s)
        self._refresh_skew()
        self.preflight["time_sync"] = f"ok (robot clock {self._skew_ns * 1e-9:+.3f} s from ours)"

    def _check_licence(self) -> None:
        from bosdyn.api import license_pb2
        from bosdyn.client.license import LicenseClient

        client = self._client(LicenseClient)
        info = client.get_license_info(timeout=self.config.connect_timeout_s)
        status = license_pb2.LicenseInfo.Status.Name(info.status)
        features = sorted(info.licensed_features)
        joint = [f for f in features if "joint" in f.lower()]
        self.preflight["licence"] = f"{status}; joint control: {', '.join(joint) or 'not listed'}"
        if info.status != license_pb2.LicenseInfo.STATUS_VALID:
            raise BridgeError(
                f"the robot's licence is not valid ({status})",
                "install a valid licence on the robot (admin page > Licence, Boston Dynamics support)",
                kind="licence",
            )
        if not joint:
            self._emit(
                "warn",
                "pre-flight: the robot's licence lists no joint-control feature; joint control will be refused "
                "unless the robot licenses it under another name (checked at activation)",
            )

    def _check_robot_state(self) -> None:
        from bosdyn.client.robot_state import RobotStateClient

        state = self._client(RobotStateClient).get_robot_state(timeout=self.config.connect_timeout_s)
        try:
            self._layout = StreamLayout.from_robot_state(state)
        except ValueError as exc:
            raise BridgeError(f"unexpected robot: {exc}", "this bridge drives Spot's 12 leg joints") from None
        battery = _battery_percent(state)
        self.preflight["battery"] = "unknown" if battery is None else f"{battery:.0f} %"
        if battery is not None and battery < self.config.min_battery_percent:
            raise BridgeError(
                f"battery at {battery:.0f} %, below min_battery_percent {self.config.min_battery_percent:g} %",
                "charge or swap the battery",
                kind="battery",
            )
        self.preflight["clear_space"] = "not checkable by the bridge: keep 2 m around Spot clear"

    def _check_estop(self) -> None:
        from bosdyn.api import estop_pb2
        from bosdyn.client.estop import EstopClient, EstopEndpoint, EstopKeepAlive

        client = self._client(EstopClient)
        if self.config.own_estop:
            endpoint = EstopEndpoint(client, self.config.client_name, self.config.estop_timeout_s)
            endpoint.force_simple_setup()
            self._estop_endpoint = endpoint
            self._estop_keepalive = EstopKeepAlive(endpoint)
            self._estop_keepalive.allow()  # check in released now, not at the keep-alive's first period
        status = client.get_status(timeout=self.config.connect_timeout_s)
        if status.stop_level != estop_pb2.ESTOP_LEVEL_NONE:
            pressed = [
                e.endpoint.name or e.endpoint.role
                for e in status.endpoints
                if e.stop_level != estop_pb2.ESTOP_LEVEL_NONE
            ]
            if not status.endpoints:
                cause = "the robot is E-Stopped: no E-Stop endpoint is registered"
            else:
                cause = f"the robot is E-Stopped by {', '.join(pressed) or 'an E-Stop'}"
            raise BridgeError(
                cause,
                "release the E-Stop (tablet or E-Stop client), or set own_estop: true for the bridge's own endpoint",
                kind="estop",
            )
        self.preflight["estop"] = "released" + (" (own endpoint)" if self.config.own_estop else "")

    def _acquire_lease(self) -> None:
        from bosdyn.client.lease import LeaseClient, LeaseKeepAlive

        client = self._client(LeaseClient)
        self._lease_keepalive = LeaseKeepAlive(
            client,
            must_acquire=True,
            return_at_exit=True,
            rpc_interval_seconds=self.config.lease_retain_interval_s,
            on_failure_callback=self._on_lease_failure,
            warnings=False,
        )
        lease = self._lease_keepalive.lease_wallet.get_lease().lease_proto
        self._lease_root = (lease.epoch, lease.sequence[0])  # the lease we acquired, whatever subleases follow
        self.preflight["lease"] = "acquired"

    def _power_on(self) -> None:
        from bosdyn.client.power import PowerClient, power_on_motors

        power_on_motors(
            self._client(PowerClient), timeout_sec=self.config.power_on_timeout_s, update_frequency=10.0, timeout=5.0
        )
        self._powered_by_us = True

    def _stand_up(self) -> None:
        from bosdyn.client.robot_command import RobotCommandClient, blocking_stand

        blocking_stand(self._client(RobotCommandClient), timeout_sec=self.config.stand_timeout_s, update_frequency=10.0)

    def _start_state_stream(self) -> None:
        self._state_thread = threading.Thread(target=self._run_state_stream, name="hw_bridge_state", daemon=True)
        self._state_thread.start()
        if not self._first_state.wait(max(2.0, 20 * self.config.state_timeout_s)):
            raise BridgeError(
                "the robot state stream sent nothing",
                "check that the robot offers robot-state-streaming (Spot software 4.0 or later) and the link",
                kind="state_stream",
            )

    def _check_stand_loads(self) -> None:
        """Standing on its own, Spot's knees must report positive loads (extending, against gravity).

        The policy node hands over torque-continuously, ``q* = q + (load + kd dq) / kp``, which holds
        only if ``load`` is the torque about the joint's axis with the sign of a commanded
        feed-forward load. Boston Dynamics calls it the measured load in N·m (spot-sdk
        ``docs/concepts/joint_control/README.md:73``) and its squat example feeds the loads it
        measured standing back as feed-forward (``python/examples/joint_control/noarm_squat.py:105-119``);
        the sign is not stated. A standing Spot's knees hold the body up: their loads are positive in
        that convention. Otherwise the hand-over would push the knees the wrong way: refuse.
        """
        sample = self._last_sample
        if sample is None:
            return
        knees = [i for i, name in enumerate(sample.joint_names) if name.endswith("_kn")]
        loads = sample.load[knees]
        shown = " ".join(f"{v:+.1f}" for v in loads)
        self.preflight["stand_loads"] = f"knees {shown} N·m while standing"
        if not (np.all(np.isfinite(loads)) and np.all(loads > 0.0)):
            raise BridgeError(
                f"the robot's knee loads while standing are {shown} N·m, not all positive: the policy node's "
                "torque-continuous hand-over (q* = q + load/kp) assumes loads in the feed-forward convention and "
                "would bend the knees the wrong way",
                "check that the robot stands on flat ground with nothing on its legs; if it does, its load "
                "convention differs from Boston Dynamics' examples: do not stream joint commands to it",
                kind="loads",
            )

    # ------------------------------------------------------------------ clients and clock
    def _make_clients(self) -> None:
        """Every client the bridge uses, made once after login (threads then only read the table)."""
        from bosdyn.client.estop import EstopClient
        from bosdyn.client.lease import LeaseClient
        from bosdyn.client.license import LicenseClient
        from bosdyn.client.power import PowerClient
        from bosdyn.client.robot_command import RobotCommandClient, RobotCommandStreamingClient
        from bosdyn.client.robot_state import RobotStateClient, RobotStateStreamingClient

        for cls in (
            EstopClient,
            LeaseClient,
            LicenseClient,
            PowerClient,
            RobotCommandClient,
            RobotCommandStreamingClient,
            RobotStateClient,
            RobotStateStreamingClient,
        ):
            self._clients[cls.default_service_name] = self._robot.ensure_client(cls.default_service_name)
        # Connect (TCP + TLS) every channel now, not at the first command of joint control.
        import grpc

        for client in self._clients.values():
            grpc.channel_ready_future(client.channel).result(timeout=self.config.connect_timeout_s)

    def _client(self, cls):
        return self._clients[cls.default_service_name]

    def channel(self, client_class):
        """The gRPC channel a client class of this bridge uses (benchmarks compare against it)."""
        return self._client(client_class).channel

    def _refresh_skew(self) -> None:
        skew = self._robot.time_sync.get_robot_clock_skew()
        self._skew_ns = int(skew.seconds) * 1_000_000_000 + int(skew.nanos)

    def robot_now_ns(self) -> int:
        return time.time_ns() + self._skew_ns

    # ------------------------------------------------------------------ state stream (its own thread)
    def _run_state_stream(self) -> None:
        from bosdyn.client.robot_state import RobotStateStreamingClient

        client = self._client(RobotStateStreamingClient)
        while not self._stopping.is_set():
            try:
                call = client.get_robot_state_stream()
                self._state_call = call
                for msg in call:
                    self._on_state_message(msg)
                    if self._stopping.is_set():
                        break
            except Exception as exc:  # grpc.RpcError: cancelled for a restart, or the link failed
                if self._stopping.is_set():
                    break
                _LOGGER.debug("state stream ended: %s", describe(exc))
            if self._stopping.wait(0.05):
                break
            self.stats["stream_restarts"] += 1

    def _on_state_message(self, msg) -> None:
        t_rx = time.perf_counter()
        now_ns = time.time_ns()
        sample = sample_from_stream(msg, self._layout)
        skew = self._skew_ns
        self._last_state_mono = time.monotonic()
        self.stats["states"] += 1
        age = (now_ns + skew - sample.acquisition_robot_ns) * 1e-9
        self.state_age_s.add(age)
        acquired = self._sent.pop(sample.last_command_key, None)
        if acquired is not None and sample.last_command_received_robot_ns:
            self.loop_latency_s.add((sample.last_command_received_robot_ns - acquired) * 1e-9)
        self._last_sample = sample
        self._first_state.set()
        try:
            self._on_state(sample, sample.acquisition_robot_ns - skew)
        except Exception as exc:  # a node being destroyed must not kill the stream
            if not self._stopping.is_set():
                _LOGGER.warning("state sink failed: %s", describe(exc))
        if age <= self.config.max_latency_s:
            self._late_since = None
        elif self._late_since is None:
            self._late_since = sample.acquisition_robot_ns
        elif sample.acquisition_robot_ns - self._late_since >= self.LATENCY_WINDOW_NS:
            self._link_fault(
                f"link latency too high: state messages arrive {age * 1e3:.0f} ms after the robot measured them "
                f"(max_latency_s {self.config.max_latency_s * 1e3:.0f} ms)",
                "use a wired link to the payload port; commands expire after command_ttl_s on the robot",
            )
            return
        if self._phase is not Phase.ACTIVE:
            return
        with self._lock:
            if self._phase is not Phase.ACTIVE or self._stream_queue is None:
                return
            command_age = time.monotonic() - self._target_time
            if command_age > self.config.command_timeout_s:
                self._command_lost(command_age)
                return
            self._key += 1
            key = self._key
            gains = self.gains if self._send_gains else None
            if self._send_gains:  # the first message of an activation: the hand-over starts here
                self._handover = (self._hand_over_target(sample), sample.acquisition_robot_ns)
            self._send_gains = False
            request = joint_request(
                self._handed_over(sample.acquisition_robot_ns),
                now_ns + skew + round(self.config.command_ttl_s * 1e9),
                key,
                gains,
                self.config.client_name,
                now_ns,
            )
            if len(self._sent) > 4096:  # keys the robot never echoed (messages it skipped)
                self._sent.clear()
            self._sent[key] = sample.acquisition_robot_ns
            self._stream_queue.put((request, t_rx))

    def _hand_over_target(self, sample: StateSample) -> np.ndarray:
        """q* of the robot now, in the policy's gains: the target that keeps the torque its joints carry
        (the policy node's rule, spot_policy.core.controller.hand_over_target)."""
        mapper = self._mapper
        return hand_over_target(
            sample.q, sample.dq, sample.load, self.gains.kp, self.gains.kd, mapper.lower, mapper.upper
        )

    def _handed_over(self, acquired_ns: int) -> np.ndarray:
        """The targets to send: within ``handover_s`` of an activation, blended from the robot's q* then
        to the node's joint_command. The node's first target at its own hand-over is already near q*;
        after a fault the node has walked on while the robot stood, and its targets would jump."""
        if self._handover is None:
            return self._targets
        start, t0_ns = self._handover
        duration_ns = self.config.handover_s * 1e9
        alpha = 1.0 if duration_ns <= 0 else (acquired_ns - t0_ns) / duration_ns
        if alpha >= 1.0:
            self._handover = None
            return self._targets
        return start + max(alpha, 0.0) * (self._targets - start)

    # ------------------------------------------------------------------ command stream (its own thread)
    def _requests(self, commands: queue.SimpleQueue):
        """The request iterator gRPC consumes: one request per state message, ends on ``None``."""
        while True:
            item = commands.get()
            if item is None:
                return
            request, t_rx = item
            self.state_to_send_s.add(time.perf_counter() - t_rx)
            self.stats["commands_sent"] += 1
            yield request
            self._first_sent.set()

    def _run_command_stream(self, generation: int, commands: queue.SimpleQueue) -> None:
        from bosdyn.api import robot_command_pb2
        from bosdyn.client.robot_command import RobotCommandStreamingClient

        client = self._client(RobotCommandStreamingClient)
        try:
            response = client.send_joint_control_commands(self._requests(commands))
            status = robot_command_pb2.JointControlStreamResponse.Status.Name(response.status)
            detail = f"{status}: {response.message}" if response.message else status
        except Exception as exc:
            detail = describe(exc)
        with self._lock:
            ours = generation == self._stream_generation and self._phase is Phase.ACTIVE
        if ours and not self._stopping.is_set():
            lowered = detail.lower()
            if "licen" in lowered:
                self._fatal(self._licence_error(detail))
            elif "lease" in lowered:
                self._lease_lost(detail)
            elif "power" in lowered or "e-stop" in lowered:
                # Motor power gone (an E-Stop): nothing to command; the monitor names the cause.
                self._enter_safe(
                    f"the robot ended the joint control stream ({detail}); fix: see the next message for why "
                    "motor power went",
                    kind="power",
                )
            else:
                self._enter_safe(
                    f"the robot ended the joint control stream ({detail}): stopped streaming, commanding a stand; "
                    "fix: check the robot's state on the tablet; joint control resumes with the next joint_command",
                    kind="stream",
                )

    def _end_stream(self) -> None:
        with self._lock:
            commands, self._stream_queue = self._stream_queue, None
            self._stream_generation += 1
        if commands is not None:
            commands.put(None)

    # ------------------------------------------------------------------ safety
    def _command_lost(self, age: float) -> None:
        """The node stopped (or stalled): the robot's own stand, and no hand-over back for recovery_s.

        Without the pause a node stalling now and then made the bridge hand the robot back and forth
        between its stand and the policy every 0.1 s (a soak run on a loaded machine fell so); with it,
        the next hand-over starts from a robot that has stood still."""
        self.stats["command_losses"] += 1
        self._commands_flowing = False
        self._hold_until = time.monotonic() + self.config.recovery_s
        action = "safe power-off" if self.config.on_command_loss is CommandLoss.POWER_OFF else "stand"
        self._enter_safe(
            f"{contract.COMMAND_LOSS} {age:.3f} s (command_timeout_s {self.config.command_timeout_s:g}): "
            f"stopped streaming, commanding a {action}; joint control resumes with a joint_command after "
            f"{self.config.recovery_s:g} s",
            kind="command_loss",
            level="warn",
        )

    def _command_lost_held_off(self, age: float) -> None:
        """joint_command stopped while joint control was held off (after a link fault or a command
        loss): the robot keeps the stand it was given; said once, so a node that died during a link
        fault is not hidden behind "joint control resumes with the next joint_command"."""
        self._commands_flowing = False
        self._emit(
            "warn",
            f"{contract.COMMAND_LOSS} {age:.3f} s (command_timeout_s {self.config.command_timeout_s:g}) while joint "
            "control was held off: the robot keeps its stand; joint control resumes with a joint_command",
        )

    def _link_fault(self, cause: str, fix: str) -> None:
        """A slow or silent link: safe behaviour now, no re-activation until it is healthy for recovery_s."""
        self._hold_until = time.monotonic() + self.config.recovery_s
        self._late_since = None
        if self._phase is Phase.ACTIVE:
            self.stats["link_faults"] += 1
            self._enter_safe(f"{cause}: stopped streaming, commanding a stand; fix: {fix}", kind="link")
        elif self._phase is Phase.READY and not self._link_fault_reported:
            self._link_fault_reported = True
            self._emit("error", f"{cause} (joint control held off); fix: {fix}")

    def _enter_safe(self, reason: str, kind: str, level: str = "error", fatal: BridgeError | None = None) -> None:
        """Stop streaming at once, then the safe action (stand / power-off) on the supervisor thread."""
        with self._lock:
            was = self._phase
            if was in (Phase.STOPPED, Phase.FAULTED):
                return  # the first fatal cause is the one that counts
            self._end_stream()
            if fatal is not None:
                self.fault = fatal
                phase = Phase.FAULTED
            elif was is Phase.SAFE or (self.config.on_command_loss is CommandLoss.POWER_OFF and was is Phase.ACTIVE):
                phase = Phase.SAFE
            else:
                phase = Phase.READY
            robot_can_act = kind not in ("estop", "lease", "power")
            if was is Phase.ACTIVE and robot_can_act:
                self._pending_action = "power_off" if phase is Phase.SAFE else "stand"
            elif self._pending_action == "activate":
                self._pending_action = None
            self._set_phase(phase, reason)
        self._wake.set()
        if was is Phase.ACTIVE or fatal is not None:
            self._emit(level, reason)

    def _fatal(self, error: BridgeError) -> None:
        error = self._clean(error)
        kind = error.kind
        self._enter_safe(str(error), kind=kind, fatal=error)

    def _licence_error(self, detail: str) -> BridgeError:
        return BridgeError(
            f"no joint-control licence: the robot refused joint control ({detail})",
            "install a Joint Control licence on the robot (Boston Dynamics support); without it only the robot's "
            "own gaits run",
            kind="licence",
        )

    def _on_lease_failure(self, exc: BaseException) -> None:
        from bosdyn.client.exceptions import LeaseUseError
        from bosdyn.client.lease import LeaseNotOwnedByWallet

        if self._stopping.is_set() or not isinstance(exc, (LeaseUseError, LeaseNotOwnedByWallet)):
            return  # transport hiccups: the keep-alive retries; the state watchdogs cover a dead link
        owner = ""
        result = getattr(exc, "lease_use_result", None)
        if result is not None and result.HasField("latest_known_lease"):
            names = [n for n in result.latest_known_lease.client_names if not n.startswith(self.config.client_name)]
            owner = names[-1] if names else ""
        self._lease_lost(f"lease keep-alive refused{f' (now held by {owner})' if owner else ''}")

    def _lease_lost(self, detail: str) -> None:
        self._fatal(
            BridgeError(
                f"lease lost: another client took the robot's lease ({detail})",
                "whoever took it (the tablet?) has the robot now; hand control back, then restart the bridge",
                kind="lease",
            )
        )

    # ------------------------------------------------------------------ supervisor (its own thread)
    def _supervise(self) -> None:
        """Runs the robot actions (activate, stand, power off) and the clock-skew refresh off the hot
        path. They block on RPCs for up to seconds, so the watchdogs have a thread of their own."""
        next_skew = time.monotonic() + 1.0
        while not self._stopping.is_set():
            self._wake.wait(0.01)
            self._wake.clear()
            if self._stopping.is_set():
                break
            with self._lock:
                action, self._pending_action = self._pending_action, None
            if action == "activate" and not self._stopping.is_set():
                self._activate()
            elif action in ("stand", "power_off"):
                self._safe_action(action)
            if time.monotonic() >= next_skew:
                next_skew = time.monotonic() + 1.0
                try:
                    self._refresh_skew()
                except Exception as exc:
                    _LOGGER.debug("clock skew refresh failed: %s", describe(exc))

    # ------------------------------------------------------------------ watchdog (its own thread)
    def _watch_timeouts(self) -> None:
        """The watchdogs that need no state message: the state stream silent, joint_command stale.
        Every 10 ms, also while the supervisor waits on the robot (an activation takes up to 3 s: a
        state stream that stalled then went unnoticed until it ended)."""
        next_restart = 0.0
        while not self._stopping.wait(0.01):
            now = time.monotonic()
            gap = now - self._last_state_mono
            if gap > self.config.state_timeout_s and self._phase in (Phase.ACTIVE, Phase.READY):
                self._link_fault(
                    f"robot state stream lost: no state message for {gap:.3f} s "
                    f"(state_timeout_s {self.config.state_timeout_s:g})",
                    "check the link to the robot (a wired payload-port link is the reliable one); streaming resumes "
                    "when state flows again",
                )
                call = self._state_call
                if call is not None and gap > 5 * self.config.state_timeout_s and now >= next_restart:
                    next_restart = now + 1.0
                    call.cancel()  # the state thread opens a new stream
            elif gap <= self.config.state_timeout_s and self._link_fault_reported and now >= self._hold_until:
                self._link_fault_reported = False
                self._emit("info", "link healthy again: joint control resumes with the next joint_command")
            age = now - self._target_time
            if age > self.config.command_timeout_s:
                with self._lock:
                    if self._phase is Phase.ACTIVE:
                        self._command_lost(age)
                    elif self._phase is Phase.READY and self._commands_flowing:
                        self._command_lost_held_off(age)

    def _activate(self) -> None:
        from bosdyn.client.robot_command import RobotCommandBuilder, RobotCommandClient

        with self._lock:
            fresh = time.monotonic() - self._target_time <= self.config.command_timeout_s
            if self._phase is not Phase.READY or not fresh or time.monotonic() < self._hold_until:
                return
            commands: queue.SimpleQueue = queue.SimpleQueue()
            self._stream_generation += 1
            generation = self._stream_generation
            self._stream_queue = commands
            self._send_gains = True
            self._first_sent.clear()
            self._set_phase(Phase.ACTIVE, "joint control: streaming the policy's joint_command")
        self._stream_thread = threading.Thread(
            target=self._run_command_stream, args=(generation, commands), name="hw_bridge_commands", daemon=True
        )
        self._stream_thread.start()
        deadline = time.monotonic() + 1.0
        while not self._first_sent.wait(0.01):
            if self._stream_generation != generation:
                return  # a watchdog ended it meanwhile (and said why)
            if time.monotonic() > deadline:
                self._hold_until = time.monotonic() + self.config.recovery_s
                self._enter_safe(
                    "joint control not started: no state message to answer within 1 s; fix: check the state stream",
                    kind="stream",
                )
                return
        try:
            self._client(RobotCommandClient).robot_command(RobotCommandBuilder.joint_command(), timeout=2.0)
        except Exception as exc:
            text = describe(exc)
            if "licen" in text.lower() or type(exc).__name__ == "UnsupportedError":
                self._fatal(self._licence_error(text))
            elif "Lease" in type(exc).__name__:
                self._lease_lost(text)
            else:
                self._hold_until = time.monotonic() + self.config.recovery_s  # no tight retry loop
                self._enter_safe(
                    f"joint control activation refused ({text}); fix: check the robot's state on the tablet "
                    "(powered, standing, not docked); retrying with the next joint_command",
                    kind="stream",
                )
            return
        if self._stream_generation != generation:
            return  # ended during the request (its stand is the supervisor's next action)
        self.stats["activations"] += 1
        ttl = self.config.command_ttl_s
        self._emit("info", f"joint control active: kp/kd from {self.gains.source}, command_ttl_s {ttl:g}")

    def _safe_action(self, action: str) -> None:
        from bosdyn.client.robot_command import RobotCommandBuilder, RobotCommandClient

        command = (
            RobotCommandBuilder.safe_power_off_command()
            if action == "power_off"
            else RobotCommandBuilder.synchro_stand_command()
        )
        try:
            self._client(RobotCommandClient).robot_command(command, timeout=1.0)
        except Exception as exc:
            if "Lease" in type(exc).__name__ and not self._stopping.is_set():
                self._lease_lost(describe(exc))
                return
            self._emit(
                "error",
                f"safe behaviour: the {action} command failed ({describe(exc)}); fix: stop the robot from the "
                "tablet or its E-Stop",
            )

    # ------------------------------------------------------------------ monitor (its own thread)
    def _watch_robot(self) -> None:
        """Polls the full robot state: E-Stop, motor power, battery (what the stream does not carry)."""
        from bosdyn.api import robot_state_pb2
        from bosdyn.client.robot_state import RobotStateClient

        client = self._client(RobotStateClient)
        battery_warned = False
        while not self._stopping.wait(self.config.monitor_period_s):
            try:
                state = client.get_robot_state(timeout=1.0)
            except Exception as exc:
                _LOGGER.debug("robot state poll failed: %s", describe(exc))
                continue
            stopped_by = [e.name for e in state.estop_states if e.state == robot_state_pb2.EStopState.STATE_ESTOPPED]
            power = state.power_state.motor_power_state
            battery = _battery_percent(state)
            if battery is not None:
                self.preflight["battery"] = f"{battery:.0f} %"
            self.preflight["motor_power"] = robot_state_pb2.PowerState.MotorPowerState.Name(power)
            self.preflight["estop"] = f"pressed: {', '.join(stopped_by)}" if stopped_by else "released"
            if self._phase not in (Phase.READY, Phase.ACTIVE):
                continue
            if stopped_by:
                self._fatal(
                    BridgeError(
                        f"the robot was E-Stopped while running (by {', '.join(stopped_by)}): motor power cut",
                        "find out why it was pressed, release it, then restart the bridge",
                        kind="estop",
                    )
                )
            elif power != robot_state_pb2.PowerState.STATE_ON:
                self._fatal(
                    BridgeError(
                        f"motor power lost while running ({robot_state_pb2.PowerState.MotorPowerState.Name(power)})",
                        "check the tablet for faults and the battery, then restart the bridge",
                        kind="power",
                    )
                )
            elif battery is not None and battery < self.config.min_battery_percent and not battery_warned:
                battery_warned = True
                self._emit("warn", f"battery at {battery:.0f} %: land the robot and swap the battery soon")

    # ------------------------------------------------------------------ shutdown
    def _release(self, action: str | None) -> None:
        """The shutdown's safe ``action`` (stand, power_off, None), then give everything back (lease, E-Stop)."""
        self._stopping.set()
        if self._state_call is not None:
            with contextlib.suppress(Exception):
                self._state_call.cancel()
        if self._state_thread is not None and self._state_thread.is_alive():
            self._state_thread.join(timeout=2.0)
        robot_obeys = self.fault is None or self.fault.kind not in ("lease", "estop", "power")
        if action is not None and self._robot is not None and self._powered_by_us and robot_obeys:
            self._safe_action(action)
        if self._lease_keepalive is not None:
            try:
                self._lease_keepalive.shutdown()  # returns the lease (and swallows why it could not)
                self.lease_returned = self._lease_is_free()
            except Exception as exc:
                self._emit("warn", f"lease return failed ({describe(exc)})")
            self._lease_keepalive = None
        if self._estop_keepalive is not None:
            try:
                self._estop_keepalive.shutdown()
            except Exception as exc:
                _LOGGER.debug("estop keep-alive shutdown failed: %s", describe(exc))
            self._estop_keepalive = None
        if self._robot is not None:
            try:
                self._robot.time_sync.stop()
                self._sdk.clear_robots()
            except Exception as exc:
                _LOGGER.debug("robot shutdown: %s", describe(exc))

    def _lease_is_free(self) -> bool:
        """Whether the robot lists the body lease as no longer ours (the proof the return worked)."""
        from bosdyn.client.lease import LeaseClient

        try:
            resources = self._client(LeaseClient).list_leases(timeout=2.0)
        except Exception as exc:
            self._emit("warn", f"could not confirm the lease return ({describe(exc)})")
            return False
        root = self._lease_root
        held = [r.lease for r in resources if r.resource == "body" and r.HasField("lease") and r.lease.sequence]
        return not any((lease.epoch, lease.sequence[0]) == root for lease in held)

    # ------------------------------------------------------------------ bookkeeping
    def _set_phase(self, phase: Phase, reason: str) -> None:
        self._phase, self._reason = phase, self._clean_text(reason)
        self.transitions.append((time.monotonic(), phase.value, self._reason))

    def _clean_text(self, text: str) -> str:
        return self.redactor.redact(text)

    def _clean(self, error: BridgeError) -> BridgeError:
        cause, fix = self._clean_text(error.cause), self._clean_text(error.fix)
        if (cause, fix) == (error.cause, error.fix):
            return error
        return BridgeError(cause, fix, error.fatal, error.kind)

    def _emit(self, level: str, message: str) -> None:
        self._emit_raw(level, self._clean_text(message))


def _battery_percent(state) -> float | None:
    """Lowest battery charge the robot reports, percent; None if it reports none."""
    values = [b.charge_percentage.value for b in state.battery_states if b.HasField("charge_percentage")]
    if state.power_state.HasField("locomotion_charge_percentage"):
        values.append(state.power_state.locomotion_charge_percentage.value)
    return min(values) if values else None


def load_gains(policy: str | Path, logs_root: Path | None = None, policies_dir: Path | None = None) -> Gains:
    """kp/kd (and the default pose) of a policy, given as the policy node takes it. ``PolicyLoadError``."""
    from spot_policy.core.loader import load_spec
    from spot_policy.core.locate import locate_run

    return Gains.from_policy_spec(load_spec(locate_run(policy, logs_root, policies_dir)))
