"""The trial harness on the ROS graph: plays a scenario's timeline into the shipped nodes, in lockstep.

It stands where a person with a gamepad (or the profile player) stands: it calls the policy node's
``~/stand``, ``~/walk``, ``~/stop`` services and publishes ``cmd_vel``; it kicks the base through
the sim bridge's ``~/push``. What makes a run reproducible is *when* these happen: the sim bridge
runs with ``lockstep_barrier`` and never passes the time the driver last sent on ``~/run_until``.
At each point of the timeline (segment starts, pushes, the instant before an injected fault) the
bridge holds with the policy's answer to that instant taken and the next step owed; the driver
changes what it must (cmd_vel, then the mode service, answered once the node's reader had that
cmd_vel, so the node has both before its next step), and releases the bridge to the next point.
So every command, push and mode switch lands on the same control step in every run, whatever the
machine's load. cmd_vel is sent only at segment starts, each one acknowledged: the trial's policy
node runs with its cmd_vel watchdog (a teleop-link safety) set past the trial's end, so no
periodic re-send has to race the simulation (:func:`spot_policy_tools.evaluate.trial.policy_params`).

``lockstep_wait_s`` (how long the bridge waits for an answer before stepping without one) is
unlimited while the policy is expected to answer (a machine stall never adds a step; a fault the
policy reports switches it, see :meth:`TrialDriver.spin_until`) and short where it is not (a stop
segment, from the instant an injected fault lands), so a silent policy never stalls the run; once
the node has latched a fault (it answers nothing until a reset, which the driver never asks for) it
is all but zero, as no wait can change the run any more.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger

from spot_policy.core import contract
from spot_policy.ros.dds_isolation import dds_environment
from spot_policy.ros.polling import PolledGroup, take_raw

#: lockstep_wait_s while the policy answers every state: 0 = wait for the answer however long it takes.
WAIT_ANSWERING_S = 0.0
#: lockstep_wait_s while the policy is silent (stopped; a fault injected, not reported yet): the sim moves on by itself.
WAIT_SILENT_S = 0.01
#: lockstep_wait_s once the policy node has latched a fault: it answers nothing until a reset (which
#: the driver never asks for), so no wait can change what happens; the sim runs at the bridge's pace.
WAIT_FAULTED_S = 0.001
#: lockstep_wait_s before the first command: the bridge republishes the start state this often, so
#: the driver's first ground truth and the policy's fresh state for its first mode come this soon.
WAIT_START_S = 0.01
#: How often the driver looks at what no message announces (services discovered, the polled ground
#: truth, subscribers matched): at the start, where each wait is on the trial's critical path, and after.
POLL_START_S = 0.005
POLL_S = 0.02

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
EVENTS = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: The ground truth is taken while the driver waits; deep enough for a whole trial's batches.
GROUND_TRUTH = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)
MARKERS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def debug(message: str) -> None:
    """Timing lines for finding where a trial's wall time goes (EVAL_DEBUG=1)."""
    if os.environ.get("EVAL_DEBUG"):
        print(f"evaluate driver: {message}", file=sys.stderr, flush=True)


class DriverError(RuntimeError):
    """The trial could not be played (a node did not come up, refused a mode, stopped answering)."""


@dataclass
class Point:
    """What happens at one control step of the trial (sim time in integer ns)."""

    t_ns: int
    segment: tuple[str, str, tuple[float, float, float], int] | None = None  # name, mode, cmd, index
    pushes: list[tuple[float, float, float]] = field(default_factory=list)
    silent_from_here: bool = False  # the policy will stop answering (a fault is injected next)
    end: bool = False


def _double(value: float) -> ParameterValue:
    return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))


class TrialDriver:
    """One rclpy context in ``domain`` for one trial; :meth:`close` when done."""

    def __init__(
        self,
        domain: int,
        env: dict[str, str] | None = None,
        bridge: str = "sim_bridge",
        policy_node: str = "policy_node",
    ) -> None:
        """``env``: the nodes' environment, whose DDS settings (localhost only, the quick-discovery
        profile, synchronous publication: trial.py) the driver's participant takes too."""
        self.context = rclpy.Context()
        with dds_environment(env if env is not None else dict(os.environ)):
            rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("evaluate_driver", context=self.context)
        n = self.node
        self.cmd_pub = n.create_publisher(Twist, contract.TOPIC_CMD_VEL, 10)
        self.marker_pub = n.create_publisher(String, contract.TOPIC_PROFILE_SEGMENT, MARKERS)
        self.run_until_pub = n.create_publisher(ClockMsg, f"/{bridge}/run_until", LATCHED)
        self.reset_pose_pub = n.create_publisher(
            JointState, f"/{bridge}/reset_pose", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.held_ns: int | None = None
        n.create_subscription(ClockMsg, f"/{bridge}/held", self._on_held, LATCHED)
        # The node's own record of each mode request, with how many cmd_vel it had by then.
        self.request_events: list[dict] = []
        n.create_subscription(String, f"/{policy_node}/events", self._on_event, EVENTS)
        self.cmd_sent = 0
        self.faulted = False  # the policy node latched a fault (its events say)
        self._adjusting = False
        # What the metrics read, recorded here rather than by a recorder process (one process less
        # per trial, and no late joiner: the driver sees the first instant before it starts).
        self._truth: list[tuple[str, type, object]] = []
        self._polled = []
        # The bridge sends it in batches (trial.bridge_params: ground_truth_batch).
        sub = n.create_subscription(
            Float64MultiArray,
            f"/{bridge}/ground_truth/batch",
            _never_called,
            GROUND_TRUTH,
            raw=True,
            callback_group=PolledGroup(),
        )
        self._polled.append(("sim_bridge/ground_truth/batch", Float64MultiArray, sub))
        self.messages: list[tuple[str, object]] = []  # events and diagnostics, as messages
        n.create_subscription(
            String, f"/{bridge}/events", lambda m: self.messages.append(("sim_bridge/events", m)), EVENTS
        )
        n.create_subscription(
            DiagnosticArray, contract.TOPIC_DIAGNOSTICS, lambda m: self.messages.append(("diagnostics", m)), 50
        )
        self.modes = {m: n.create_client(Trigger, f"/{policy_node}/{m}") for m in ("stand", "walk", "stop")}
        self.reset_client = n.create_client(Trigger, f"/{bridge}/reset")
        self.push_client = n.create_client(Trigger, f"/{bridge}/push")
        self.params_client = n.create_client(SetParameters, f"/{bridge}/set_parameters")
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)
        self._wait_s: float | None = None
        self._poll_s = POLL_S

    def _on_event(self, msg: String) -> None:
        self.messages.append(("policy_node/events", msg))
        try:
            record = json.loads(msg.data)
        except ValueError:
            return
        if record.get("event") == "request":
            self.request_events.append(record)
        elif "FAULT" in str(record.get("message", "")):
            self.faulted = True

    def _on_held(self, msg: ClockMsg) -> None:
        self.held_ns = msg.clock.sec * 1_000_000_000 + msg.clock.nanosec

    # ------------------------------------------------------------------ plumbing
    def spin_until(
        self, done: Callable[[], bool], timeout_s: float, alive: Callable[[], str | None], what: str
    ) -> None:
        end = time.monotonic() + timeout_s
        while not done():
            broken = alive()
            if broken:
                raise DriverError(broken)
            if time.monotonic() > end:
                raise DriverError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=self._poll_s)  # wakes at once on a message or an answer
            self.drain()
            if self.faulted and self._wait_s != WAIT_FAULTED_S and not self._adjusting:
                # The policy is silent for good now (injected or not): the sim moves on by itself.
                self._adjusting = True
                try:
                    self.set_wait(WAIT_FAULTED_S, alive)
                finally:
                    self._adjusting = False

    def _quiet_wait(self) -> float:
        return WAIT_FAULTED_S if self.faulted else WAIT_SILENT_S

    def drain(self) -> int:
        """Take the ground truth that arrived (raw bytes; decoded in :meth:`series`)."""
        before = len(self._truth)
        for name, msg_type, sub in self._polled:
            while (taken := take_raw(sub)) is not None:
                self._truth.append((name, msg_type, taken[0]))
        return len(self._truth) - before

    def series(self) -> list[tuple[str, object]]:
        """Everything recorded, as (topic, message): the input of trial_data.collect."""
        self.drain()
        return [(name, deserialize_message(data, t)) for name, t, data in self._truth] + list(self.messages)

    def call(self, client, request, alive: Callable[[], str | None], timeout_s: float = 30.0):
        future = client.call_async(request)
        self.spin_until(future.done, timeout_s, alive, f"{client.srv_name}")
        return future.result()

    def set_wait(self, wait_s: float, alive: Callable[[], str | None]) -> None:
        if self._wait_s == wait_s:
            return
        request = SetParameters.Request(parameters=[ParameterMsg(name="lockstep_wait_s", value=_double(wait_s))])
        result = self.call(self.params_client, request, alive)
        if not result or not result.results or not result.results[0].successful:
            raise DriverError(f"the sim bridge refused lockstep_wait_s {wait_s}")
        self._wait_s = wait_s

    def publish_cmd(self, cmd: tuple[float, float, float]) -> None:
        """Sent before the mode request that follows it (:meth:`request`, which checks the node had
        it). Waiting for the reader's acknowledgement instead would wait for the writer's heartbeat."""
        msg = Twist()
        msg.linear.x, msg.linear.y, msg.angular.z = cmd
        self.cmd_pub.publish(msg)
        self.cmd_sent += 1

    def request(self, mode: str, alive: Callable[[], str | None]):
        """Call the node's ``~/<mode>`` once it has every cmd_vel sent so far: its ``request`` event
        says how many it had when it answered; if one was still in flight, ask again (asking for the
        mode it is in changes nothing). So the new command is in force from the next step on."""
        result = None
        for _ in range(200):
            seen = len(self.request_events)
            result = self.call(self.modes[mode], Trigger.Request(), alive)
            self.spin_until(lambda n=seen: len(self.request_events) > n, 10.0, alive, "the policy node's request event")
            had = self.request_events[-1].get("inputs", {}).get("cmd_vel", [0])[0]
            if had >= self.cmd_sent:
                return result
            pause = time.monotonic() + 0.005
            self.spin_until(lambda until=pause: time.monotonic() > until, 5.0, alive, "cmd_vel")
        raise DriverError(f"the policy node did not receive cmd_vel before ~/{mode} ({self.cmd_sent} sent)")

    def mark(self, name: str, index: int, t_ns: int) -> None:
        self.marker_pub.publish(String(data=f'{{"segment": "{name}", "index": {index}, "t": {t_ns * 1e-9:.9f}}}'))

    # ------------------------------------------------------------------ the trial
    def start(self, reset_pose: dict[str, float] | None, first_mode: str, alive: Callable[[], str | None]) -> None:
        """Nodes up, the bridge's ground truth arriving here (the start state, which the bridge
        republishes until the first command), the robot reset (to ``reset_pose``), the policy in
        ``first_mode`` at sim time 0."""
        self._poll_s = POLL_START_S
        try:
            self._start(reset_pose, first_mode, alive)
        finally:
            self._poll_s = POLL_S

    def _start(self, reset_pose: dict[str, float] | None, first_mode: str, alive: Callable[[], str | None]) -> None:
        clients = [*self.modes.values(), self.reset_client, self.push_client, self.params_client]
        t0 = time.monotonic()
        self.spin_until(lambda: all(c.service_is_ready() for c in clients), 60.0, alive, "the nodes' services")
        debug(f"services ready after {time.monotonic() - t0:.2f} s")
        self.spin_until(lambda: len(self._truth) > 0, 60.0, alive, "the sim bridge's ground truth")
        debug(f"ground truth arriving after {time.monotonic() - t0:.2f} s")
        self.set_wait(WAIT_START_S, alive)
        self.spin_until(
            lambda: self.cmd_pub.get_subscription_count() > 0 and self.reset_pose_pub.get_subscription_count() > 0,
            30.0,
            alive,
            "cmd_vel and reset_pose subscribers",
        )
        if reset_pose:
            msg = JointState(name=list(reset_pose), position=[float(v) for v in reset_pose.values()])
            self.reset_pose_pub.publish(msg)  # before ~/reset, which the bridge answers after taking it
            result = self.call(self.reset_client, Trigger.Request(), alive)
            if not result or not result.success:
                raise DriverError(f"the sim bridge refused the reset: {result.message if result else 'no answer'}")
        self.publish_cmd((0.0, 0.0, 0.0))
        end = time.monotonic() + 60.0
        while True:  # the node accepts once it has a fresh state (the bridge republishes it)
            result = self.request(first_mode, alive)
            if result and result.success:
                debug(f"standing after {time.monotonic() - t0:.2f} s")
                break
            if time.monotonic() > end:
                raise DriverError(f"the policy node refused {first_mode}: {result.message if result else 'no answer'}")
            pause = time.monotonic() + WAIT_START_S  # the bridge's next republish of the start state
            self.spin_until(lambda until=pause: time.monotonic() > until, 5.0, alive, "a fresh state")

    def play(
        self,
        points: list[Point],
        first_mode: str,
        alive: Callable[[], str | None],
        wall_limit_s: float,
        progress: Callable[[float], None] | None = None,
    ) -> None:
        """Release the bridge point by point and act at each (see the module docstring); the policy
        is in ``first_mode`` already (:meth:`start`)."""
        started = time.monotonic()
        silent = False
        current_mode = first_mode
        for point in points:
            if point.t_ns > 0:
                self.run_until_pub.publish(ClockMsg(clock=_time(point.t_ns)))
                remaining = wall_limit_s - (time.monotonic() - started)
                self.spin_until(
                    lambda p=point: self.held_ns is not None and self.held_ns >= p.t_ns,
                    max(remaining, 1.0),
                    alive,
                    f"the simulation to reach {point.t_ns * 1e-9:.2f} s",
                )
            if progress is not None:
                progress(point.t_ns * 1e-9)
            debug(f"{time.monotonic() - started:8.3f} s: at {point.t_ns * 1e-9:.2f} s sim")
            if point.end:
                return
            if point.segment is not None:
                name, mode, cmd, index = point.segment
                if point.t_ns > 0:  # at 0: the zero command start() sent and the node acknowledged
                    self.publish_cmd(cmd if mode == "walk" else (0.0, 0.0, 0.0))
                self.mark(name, index, point.t_ns)
                if point.t_ns > 0 and (mode != current_mode or mode != "stand"):
                    result = self.request(mode, alive)
                    if (not result or not result.success) and not silent:
                        raise DriverError(
                            f"the policy node refused {mode} at {point.t_ns * 1e-9:.2f} s: "
                            f"{result.message if result else 'no answer'}"
                        )
                current_mode = mode
            for velocity in point.pushes:
                request = SetParameters.Request(
                    parameters=[
                        ParameterMsg(
                            name="push_velocity",
                            value=ParameterValue(
                                type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=list(velocity)
                            ),
                        )
                    ]
                )
                self.call(self.params_client, request, alive)
                result = self.call(self.push_client, Trigger.Request(), alive)
                if not result or not result.success:
                    raise DriverError(f"the sim bridge refused a push at {point.t_ns * 1e-9:.2f} s")
            silent = silent or point.silent_from_here or self.faulted
            quiet = silent or current_mode == "stop"
            if point.t_ns == 0 and not quiet:
                # The bridge republishes the start state (WAIT_START_S) until the policy's first
                # answer; only once it holds with that answer taken may the wait become unlimited.
                self.spin_until(lambda: self.held_ns is not None, 30.0, alive, "the policy's first answer")
            self.set_wait(self._quiet_wait() if quiet else WAIT_ANSWERING_S, alive)

    def close(self) -> None:
        try:
            self.executor.shutdown()
            self.node.destroy_node()
        finally:
            rclpy.shutdown(context=self.context)


def _never_called(_msg: object) -> None:
    """Polled subscriptions are taken with take_raw, never dispatched by the executor."""


def _time(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def timeline(
    segments: list[tuple[str, str, float, float, tuple[float, float, float]]],
    pushes: list[tuple[float, tuple[float, float, float]]],
    fault_at_s: float | None,
    end_s: float,
    control_dt: float,
) -> list[Point]:
    """The points of a trial: ``segments`` as (name, mode, start s, duration s, cmd), pushes as
    (at s, world velocity), all in trial time, rounded to whole control steps; a fault at
    ``fault_at_s`` lands on the first state instant at or after it (the sim bridge's rule), and the
    policy goes silent from the point one control step before that instant."""
    step_ns = round(control_dt * 1e9)

    def at(t: float) -> int:
        return round(t / control_dt) * step_ns

    points: dict[int, Point] = {}

    def point(t_ns: int) -> Point:
        return points.setdefault(t_ns, Point(t_ns))

    for index, (name, mode, start, _duration, cmd) in enumerate(segments):
        point(at(start)).segment = (name, mode, cmd, index)
    for t, velocity in pushes:
        point(at(t)).pushes.append(velocity)
    if fault_at_s is not None:
        # Held there, the policy has answered its last clean instant; the next one is faulty.
        first_faulty = math.ceil((fault_at_s - 1e-9) / control_dt - 1e-9) * step_ns
        point(max(0, first_faulty - step_ns)).silent_from_here = True
    end_ns = at(end_s)
    point(0)
    point(end_ns).end = True
    ordered = sorted(points.values(), key=lambda p: p.t_ns)
    return [p for p in ordered if p.t_ns <= end_ns]
