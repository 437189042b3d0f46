"""The emulated robot's body: MuJoCo Spot (the sim bridge's model) run by the robot's own controllers.

What the API services ask of the robot happens here, on a physics thread paced to real time:

- motors off: a weak hold of the legs where they were (back-driven gearboxes);
- power on, stand, sit, safe power-off: the robot's own controller with Spot's SDK default gains
  (hx 624/5.2, hy 936/5.2, kn 286/2.04 N·m/rad, N·m·s/rad) and a joint damping of its own
  (:data:`OWN_DAMPING`, integrated implicitly by MuJoCo), so a standing Spot is at rest and its
  joint loads are steady. It stands up in Spot's own posture at the stand command's body height and
  orientation, moving its feet on straight lines (:mod:`.posture`), so a stand-up does not drag the
  feet into friction preloads; a robot already up (after joint control) stands in place: it cannot
  step, so its feet stay where they are and the body levels over them;
- joint control: PD on the streamed targets with the streamed gains (``k_q_p``, ``k_qd_p``; the first
  message sets them, later ones may omit them); no damping of the robot's own. Feed-forward
  ``load`` and ``velocity`` are accepted and ignored (the bridge sends zeros);
- E-Stop: motor power cut at once.

Joint loads (``load`` in the state) are the torques the controller in charge applies, N·m about each
joint's axis: what Boston Dynamics documents as the measured load (spot-sdk v5.1.4
``docs/concepts/joint_control/README.md:73``).

Timing. Every command is stamped with its arrival time when the RPC thread receives it, before any
lock (the physics thread may hold the body's lock while it catches up). Each physics step has its
own robot-clock time; a step applies every command that arrived by then and only then judges
whether the command in force has expired, so a command that arrived before the previous one's
``end_time`` always counts. A command that arrives after its own ``end_time`` is refused and the
stream ends with ``STATUS_EXPIRED``, which is what that status means (spot-sdk
``protos/bosdyn/api/robot_command.proto:204``). When the command in force expires with no newer one
(``end_time`` passed), :class:`ExpiryMode` decides; see there.

When the physics thread wakes late (this machine stalled it), it steps every missed step back to
back at its own time, so no state sample is lost and the stream's rate stays at ~333 Hz; each
stall over :data:`STALL_REPORT_S` is reported. Joint arrays here are in Isaac order (MujocoSpot's);
the services convert to the SDK order by name.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from spot_hw_bridge.emulator.posture import BodyOffset, LegKinematics
from spot_policy.core import contract

ISAAC = contract.ISAAC_JOINT_ORDER
SDK = contract.SDK_JOINT_ORDER
SDK_FROM_ISAAC = np.array(contract.index_map(ISAAC, SDK), dtype=np.intp)  # sdk_array = isaac_array[this]
ISAAC_FROM_SDK = np.array(contract.index_map(SDK, ISAAC), dtype=np.intp)

_GAINS = {"hx": (624.0, 5.20), "hy": (936.0, 5.20), "kn": (286.0, 2.04)}
ROBOT_KP = np.array([_GAINS[n.split("_")[1]][0] for n in ISAAC])
ROBOT_KD = np.array([_GAINS[n.split("_")[1]][1] for n in ISAAC])
#: The robot's own controller damps its joints this much more (N·m·s/rad, implicit in MuJoCo): with
#: the SDK gains alone a standing Spot rocks fore and aft for seconds (a lightly damped mode of the
#: stiff stance), and its joint loads swing by ±15 N·m, which a robot standing still does not show.
OWN_DAMPING = 20.0
#: Motors off: the back-driven gearboxes hold the legs loosely where they were (a weak PD on the
#: pose at power-off). With free joints the folded legs would splay under the resting body.
OFF_KP, OFF_KD = 30.0, 2.0
MOTION_S = 1.5  # stand up / sit down duration
#: A stand of a robot already up (taking over from joint control) is a stand in place: no stepping
#: here, so the feet stay where they are (a lifted one comes straight down), the body levels over them.
IN_PLACE_S = 0.6
#: After a stand motion the robot settles onto its feet where they are (their slip is not fought).
SETTLE_S = 0.3
POWER_ON_S = 0.3
#: After activation without any command yet, the robot holds its pose this long before standing.
FIRST_COMMAND_GRACE_NS = 500_000_000
#: A physics wake-up this late is reported as a stall of the emulator (its own machine).
STALL_REPORT_S = 0.03
#: The physics thread catches up this many missed steps at most (1 s); beyond, they are dropped.
MAX_CATCH_UP_STEPS = 500
#: Steps are stamped on their schedule; one this far off the robot clock re-anchors the schedule.
RESYNC_NS = 50_000_000

#: A fall, as the run report judges one (spot_policy_tools.run_report): base below 0.25 m or tilted over 60°.
FALL_HEIGHT_M, FALL_UPRIGHT_MIN = 0.25, 0.5

Report = Callable[[str, str], None]  # (kind, message): one line each, counted by kind


class Behaviour(str, Enum):
    OFF = "off"
    POWERING_ON = "powering_on"
    HOLD = "hold"
    STAND = "stand"
    SIT = "sit"
    SAFE_POWER_OFF = "safe_power_off"
    JOINT = "joint_control"


class ExpiryMode(str, Enum):
    """What the robot does when the joint command in force reaches its ``end_time`` with no newer one.

    Boston Dynamics documents only that ``end_time`` is when "the command will stop executing" (to
    prevent runaway commands: spot-sdk ``protos/bosdyn/api/basic_command.proto:600-603``) and that
    ``STATUS_EXPIRED`` means a command *arrived* after its ``end_time``
    (``protos/bosdyn/api/robot_command.proto:204``). Their RL Researcher Kit says that when joint
    commands stop "robot will revert to bosdyns standing controller" (github
    boston-dynamics/spot-rl-example ``python/spot/spot.py:124-125``).

    ``STAND`` (default, the emulator's reading of those sources): the robot's standing controller
    takes over at once, the stream stays open and joint control stays active; the next command that
    arrives in time resumes it. ``END``: joint control ends there, the robot stands, and the open
    stream is answered ``STATUS_EXPIRED`` at its next message (a new ``joint_command`` activation is
    needed). Neither is confirmed on a real Spot.
    """

    STAND = "stand"
    END = "end"


@dataclass(frozen=True)
class JointTarget:
    q: np.ndarray  # Isaac order
    kp: np.ndarray | None  # Isaac order; None: keep the gains in force
    kd: np.ndarray | None
    end_ns: int  # robot clock
    key: int
    arrival_ns: int  # robot clock, when the robot received it


@dataclass(frozen=True)
class Snapshot:
    """One state sample (Isaac order arrays), as the state services report it."""

    seq: int
    robot_ns: int
    ready_at: float  # time.monotonic() at which it may be sent (added latency)
    q: np.ndarray
    dq: np.ndarray
    tau: np.ndarray  # the torque the controller in charge applies (the robot's "load")
    position: np.ndarray  # odom = world
    quat_wxyz: np.ndarray
    lin_vel_odom: np.ndarray
    ang_vel_odom: np.ndarray
    acc_body: np.ndarray  # acceleration relative to odom, in the body (= IMU link) frame
    ang_vel_body: np.ndarray
    contacts: tuple[bool, ...]  # per foot, fl fr hl hr: touching the ground
    feet_body: np.ndarray  # (4, 3) each foot's sole (lowest point) in the body frame
    last_key: int
    last_received_ns: int
    motor_power_on: bool


@dataclass
class CommandRecord:
    kind: str  # stand | sit | safe_power_off | joint
    issued_ns: int
    outcome: str = ""  # why it stopped (joint control): expired, E-Stop, superseded, ...


def _smooth(a: float) -> float:
    a = min(max(a, 0.0), 1.0)
    return a * a * (3.0 - 2.0 * a)


class RobotBody:
    """Spot's body and controllers; every method is thread-safe (one lock, held per physics step)."""

    def __init__(
        self,
        robot_clock_ns: Callable[[], int],
        state_rate_hz: float = 333.0,
        physics_dt: float = 0.002,
        expiry: ExpiryMode = ExpiryMode.STAND,
        report: Report | None = None,
    ) -> None:
        from spot_sim_bridge.backends.mujoco import MujocoSpot

        self.clock_ns = robot_clock_ns
        self.expiry = ExpiryMode(expiry)
        self.report: Report = report or (lambda kind, message: None)
        self.backend = MujocoSpot(physics_dt=physics_dt)
        self.kinematics = LegKinematics(self.backend.mj_model)
        self.physics_dt = physics_dt
        self.state_period_steps = max(1.0, 1.0 / (state_rate_hz * physics_dt))
        self.lock = threading.RLock()
        self.snapshot_ready = threading.Condition(threading.Lock())
        self.latency_s = 0.0
        self.events: deque[tuple[float, str]] = deque(maxlen=500)  # (time.monotonic(), what)
        self.counters = {
            "joint_commands": 0,
            "joint_commands_expired_on_arrival": 0,
            "joint_control_expiries": 0,
            "joint_control_resumes": 0,
            "state_snapshots": 0,
            "stalls": 0,
            "dropped_steps": 0,
            "falls": 0,
        }
        self.longest_stall_s = 0.0
        model = self.backend.mj_model
        self._dofs = np.array([model.joint(n).dofadr[0] for n in ISAAC], dtype=np.intp)
        self._foot_geoms = self.kinematics.foot_geoms
        self._foot_geom_ids = tuple(int(g) for g in self._foot_geoms)
        self._foot_radius = self.kinematics.foot_radius
        self._damping = np.zeros(len(ISAAC))
        self._sit_q = self.kinematics.sit_pose()
        self._arrival_lock = threading.Lock()  # stamping + queueing a command is one step
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_joint_end: Callable[[str, str], None] = lambda status, message: None
        self.reset()

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        """Sitting on the floor, motors off, no commands."""
        with self.lock:
            self.backend.reset(dict(zip(ISAAC, self._sit_q.tolist(), strict=True)))
            self.behaviour = Behaviour.OFF
            self._motors_off()
            self.backend.step(round(1.0 / self.physics_dt))  # settle on the floor before anyone looks
            self._motors_off()
            self._steps = 0
            self._dt_ns = round(self.physics_dt * 1e9)
            self._last_stamp_ns = 0
            self._next_state = 0.0
            self._motion: tuple[np.ndarray, int, int] | None = None  # (path, first step, steps)
            self._settle_after = False
            self._last_motion_target = self._sit_q.copy()
            self._power_on_at: int | None = None
            self._off_after_motion = False
            self.stand_offset = BodyOffset()
            self._stand_q, _ = self.kinematics.stand_pose(self.stand_offset)
            self.commands: dict[int, CommandRecord] = {}
            self.current_command = 0
            self._next_id = 1
            self._target: JointTarget | None = None
            self._joint_kp = ROBOT_KP.copy()
            self._joint_kd = ROBOT_KD.copy()
            self._joint_deadline_ns = 0
            self._lapsed_at: int | None = None  # robot time joint control lapsed onto the robot's stand
            self._applied_key = -1
            self.last_key = 0
            self.last_received_ns = 0
            with self._arrival_lock:
                self._arriving: deque[JointTarget] = deque()
            self.snapshots: deque[Snapshot] = deque(maxlen=512)  # the stream sends each, in order
            self._seq = 0
            self._stood = False  # it stood since motor power came on: a fall can be told from a sit
            self._fallen = False
            self._snapshot_now(self.clock_ns())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spot_emulator_physics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.backend.close()

    @property
    def motor_power_on(self) -> bool:
        return self.behaviour not in (Behaviour.OFF, Behaviour.POWERING_ON)

    @property
    def standing(self) -> bool:
        return self.behaviour is Behaviour.STAND and self._motion is None

    @property
    def sitting(self) -> bool:
        return self.behaviour in (Behaviour.SIT, Behaviour.SAFE_POWER_OFF, Behaviour.OFF) and self._motion is None

    @property
    def joint_lapsed(self) -> bool:
        """In joint control, but standing on its own: the last command expired (ExpiryMode.STAND)."""
        return self.behaviour is Behaviour.JOINT and self._lapsed_at is not None

    @property
    def stand_pose(self) -> np.ndarray:
        """The joint angles the robot's own stand holds now (Isaac order)."""
        return self._stand_q.copy()

    @property
    def joint_gains(self) -> tuple[np.ndarray, np.ndarray]:
        """(kp, kd) of joint control in SDK order: the last ones a stream sent, else the robot's own."""
        with self.lock:
            return self._joint_kp[SDK_FROM_ISAAC].copy(), self._joint_kd[SDK_FROM_ISAAC].copy()

    @property
    def time_s(self) -> float:
        return self._steps * self.physics_dt

    def note(self, what: str) -> None:
        self.events.append((time.monotonic(), what))

    def _tell(self, kind: str, what: str, detail: str = "") -> None:
        """An event: noted (``what``) and reported as one line of ``kind``."""
        self.note(what)
        self.report(kind, detail or what)

    # ------------------------------------------------------------------ what the services ask
    def power_on(self) -> None:
        with self.lock:
            if self.behaviour is Behaviour.OFF:
                self.behaviour = Behaviour.POWERING_ON
                self._power_on_at = self._steps + round(POWER_ON_S / self.physics_dt)
                self._tell("power", "power on", f"power on requested: motor power on in {POWER_ON_S:g} s")

    def cut_power(self, why: str) -> None:
        """Motors off now (E-Stop cut, power off request)."""
        with self.lock:
            was = self.behaviour
            self.behaviour = Behaviour.OFF
            self._motion = None
            self._power_on_at = None
            self._lapsed_at = None
            self._motors_off()
            self._supersede(why)
            if was is not Behaviour.OFF:
                self._tell("power", f"motor power cut: {why}", f"motor power cut ({why}): the legs go limp")
        if was is Behaviour.JOINT:
            self.on_joint_end("STATUS_INACTIVE", f"joint control ended: motor power cut ({why})")

    def command(self, kind: str, offset: BodyOffset | None = None) -> int:
        """A full-body or mobility command (stand, sit, safe_power_off, joint); returns its id.

        ``offset``: a stand's body height and orientation (``mobility_params``), saturated to what
        the legs reach. The foot path is planned here, on the caller's thread, before the lock.
        """
        path = None
        reached = self.stand_offset
        seconds = MOTION_S
        if kind != "joint":
            snap = self.snapshot
            if kind == "stand":
                requested = (offset or BodyOffset()).saturated()
                goal, reached = self.kinematics.stand_pose(requested)
                if offset is not None and reached != offset:
                    asked, got = offset.describe(), reached.describe()
                    self.report("command", f"stand: body offset ({asked}) saturated to ({got})")
                if self._stood and not self._fallen:  # up already (walking, say): stand in place
                    goal, seconds = self._in_place_goal(snap, reached, goal), IN_PLACE_S
            else:
                goal = self._sit_q
            path = self.kinematics.foot_path(snap.q, goal)
        with self.lock:
            was_joint = self.behaviour is Behaviour.JOINT
            self._supersede(f"superseded by a {kind} command")
            command_id = self._next_id
            self._next_id += 1
            now = self.clock_ns()
            self.commands[command_id] = CommandRecord(kind, now)
            self.current_command = command_id
            self.note(f"{kind} command")
            if kind == "joint":
                self.behaviour = Behaviour.JOINT
                self._lapsed_at = None
                self._motion = None
                target = self._target
                if target is None or target.end_ns <= now:
                    # Nothing in force yet: hold the pose until the first command (or the grace ends).
                    self._target = JointTarget(self.backend.state().q, None, None, now + FIRST_COMMAND_GRACE_NS, 0, now)
                self._joint_deadline_ns = self._target.end_ns
                self._applied_key = -1
                self.report("joint", "joint control activated: the robot follows the streamed commands")
            else:
                if kind == "stand":
                    self.stand_offset, self._stand_q = reached, path[-1].copy()
                self.behaviour = {"stand": Behaviour.STAND, "sit": Behaviour.SIT}.get(kind, Behaviour.SAFE_POWER_OFF)
                path[0] = self.backend.state().q  # the legs moved a little while the path was planned
                self._start_motion(path, seconds, settle=kind == "stand")
                self._off_after_motion = kind == "safe_power_off"
                if kind == "safe_power_off":
                    self.report("power", "safe power-off: sitting down, then motor power off")
                elif kind == "stand":
                    self.report("command", f"stand ({self.stand_offset.describe()})")
                else:
                    self.report("command", "sit")
        if was_joint and kind != "joint":
            self.on_joint_end("STATUS_INACTIVE", f"joint control ended: superseded by a {kind} command")
        return command_id

    def stream_started(self) -> None:
        """A new joint command stream: until it sends gains, the robot's own holding gains apply."""
        with self.lock:
            self._joint_kp, self._joint_kd = ROBOT_KP.copy(), ROBOT_KD.copy()
            self._applied_key = -1

    def joint_command(self, q_sdk: np.ndarray, kp_sdk, kd_sdk, end_ns: int, key: int, delay_ns: int = 0) -> str:
        """One streamed command, received now; it reaches the robot ``delay_ns`` later (added latency).

        Returns "" when accepted, else why the robot refuses it: it arrives after its own
        ``end_time`` (the stream then ends ``STATUS_EXPIRED``). Never waits for the body's lock.
        """
        kp = None if kp_sdk is None else np.asarray(kp_sdk, dtype=np.float64)[ISAAC_FROM_SDK]
        kd = None if kd_sdk is None else np.asarray(kd_sdk, dtype=np.float64)[ISAAC_FROM_SDK]
        q = np.asarray(q_sdk, dtype=np.float64)[ISAAC_FROM_SDK]
        with self._arrival_lock:
            arrival = self.clock_ns() + int(delay_ns)
            late = arrival >= end_ns
            if not late:
                self._arriving.append(JointTarget(q, kp, kd, int(end_ns), int(key), arrival))
        if late:
            self.counters["joint_commands_expired_on_arrival"] += 1
            why = f"joint command {key} arrived {(arrival - end_ns) * 1e-6:.1f} ms after its end_time"
            what = f"{why}: the robot ends the stream (STATUS_EXPIRED)"
            self._tell("expiry", "joint command expired on arrival", what)
            return why
        return ""

    def feedback(self, command_id: int) -> tuple[str, str]:
        """(overall status, command-specific status) names for RobotCommandFeedback."""
        with self.lock:
            record = self.commands.get(command_id)
            if record is None:
                return "STATUS_UNKNOWN", ""
            if command_id != self.current_command:
                return "STATUS_COMMAND_OVERRIDDEN", record.outcome
            if record.kind == "stand":
                return "STATUS_PROCESSING", "STATUS_IS_STANDING" if self.standing else "STATUS_IN_PROGRESS"
            if record.kind == "sit":
                return "STATUS_PROCESSING", "STATUS_IS_SITTING" if self.sitting else "STATUS_IN_PROGRESS"
            if record.kind == "safe_power_off":
                done = self.behaviour is Behaviour.OFF
                return "STATUS_PROCESSING", "STATUS_POWERED_OFF" if done else "STATUS_IN_PROGRESS"
            if self.behaviour is Behaviour.JOINT:
                return "STATUS_PROCESSING", "STATUS_ACTIVE"
            return "STATUS_COMMAND_TIMED_OUT", "STATUS_ERROR"

    # ------------------------------------------------------------------ physics
    def advance(self, steps: int, now_ns: int) -> None:
        """Run ``steps`` physics steps back to back, the last one at robot time ``now_ns`` (each step at
        its own time, ``physics_dt`` apart). The physics thread calls this; tests call it with a
        clock of their own instead of starting the thread."""
        for i in range(steps):
            t_ns = now_ns - (steps - 1 - i) * self._dt_ns
            with self.lock:
                ended = self._step(t_ns)
                snap = self._steps >= self._next_state
                if snap:
                    self._next_state += self.state_period_steps
                    if self._next_state <= self._steps:
                        self._next_state = self._steps + self.state_period_steps
                    self._snapshot_now(t_ns)
            if ended is not None:
                self.on_joint_end(*ended)
            if snap:
                with self.snapshot_ready:
                    self.snapshot_ready.notify_all()

    def _run(self) -> None:
        from spot_sim_bridge.core.bridge import RealtimePacer

        pacer = RealtimePacer(self.physics_dt, max_catch_up=MAX_CATCH_UP_STEPS)
        dt = self._dt_ns
        next_ns = self.clock_ns() + dt  # the robot time of the next step: steps keep their schedule
        while not self._stop.is_set():
            dropped = pacer.dropped_steps
            due = pacer.wait()
            dropped = pacer.dropped_steps - dropped
            next_ns += dropped * dt
            last_ns = next_ns + (due - 1) * dt
            now = self.clock_ns()
            if abs(now - last_ns) > RESYNC_NS:  # the robot clock was set (or the schedule drifted): follow it
                next_ns, last_ns = now - (due - 1) * dt, now
            self.advance(due, last_ns)
            next_ns += due * dt
            late_s = (due - 1) * self.physics_dt
            if late_s >= STALL_REPORT_S or dropped:
                self._stalled(late_s, dropped)

    def _stalled(self, late_s: float, dropped: int) -> None:
        self.counters["stalls"] += 1
        self.counters["dropped_steps"] += dropped
        self.longest_stall_s = max(self.longest_stall_s, late_s + dropped * self.physics_dt)
        if dropped:
            detail = (
                f"the emulator froze {(late_s + dropped * self.physics_dt) * 1e3:.0f} ms (its machine): "
                f"{dropped} physics steps dropped, the body's time ran slow"
            )
        else:
            detail = (
                f"the emulator stalled {late_s * 1e3:.0f} ms (its machine): physics caught up "
                f"{round(late_s / self.physics_dt)} steps, every state sample kept"
            )
        self._tell("stall", "stall", detail)

    def _step(self, t_ns: int) -> tuple[str, str] | None:
        """One physics step at robot time ``t_ns`` (lock held); a joint-control end to report."""
        self._take_arrivals(t_ns)
        ended = self._control(t_ns)
        self.backend.step(1)
        self._steps += 1
        return ended

    def _take_arrivals(self, t_ns: int) -> None:
        """Every command that arrived by ``t_ns`` takes effect, in arrival order."""
        with self._arrival_lock:
            arrived = []
            while self._arriving and self._arriving[0].arrival_ns <= t_ns:
                arrived.append(self._arriving.popleft())
        for target in arrived:
            self.last_key, self.last_received_ns = target.key, target.arrival_ns
            self.counters["joint_commands"] += 1
            if target.kp is not None and target.kd is not None:
                self._joint_kp, self._joint_kd = target.kp, target.kd
                self._applied_key = -1
            self._target = target
            if self.behaviour is Behaviour.JOINT:
                self._joint_deadline_ns = target.end_ns
                if self._lapsed_at is not None and target.end_ns > t_ns:
                    self._resume(t_ns)

    def _resume(self, t_ns: int) -> None:
        lapse_ms = (t_ns - (self._lapsed_at or t_ns)) * 1e-6
        self._lapsed_at = None
        self._motion = None
        self._applied_key = -1
        self.counters["joint_control_resumes"] += 1
        self._tell(
            "joint", "joint control resumed", f"joint control resumed after {lapse_ms:.0f} ms on the robot's own stand"
        )

    def _control(self, t_ns: int) -> tuple[str, str] | None:
        """The robot's controller for the step at ``t_ns`` (lock held); a joint-control end to report."""
        b = self.behaviour
        if b is Behaviour.POWERING_ON and self._power_on_at is not None and self._steps >= self._power_on_at:
            q = self.backend.state().q
            self.behaviour = Behaviour.HOLD
            self._power_on_at = None
            self._own_control()
            self.backend.set_targets(q)
            self._tell("power", "motor power on", "motor power on: holding the legs where they are")
        elif b is Behaviour.JOINT and self._lapsed_at is None:
            if t_ns > self._joint_deadline_ns:
                return self._expired(t_ns)
            target = self._target
            if target is not None and target.key != self._applied_key:
                self._applied_key = target.key
                self._client_control(self._joint_kp, self._joint_kd)
                self.backend.set_targets(target.q)
            return None
        self._follow_motion()
        return None

    def _expired(self, t_ns: int) -> tuple[str, str] | None:
        """The command in force passed its end_time with no newer one (lock held)."""
        self.counters["joint_control_expiries"] += 1
        key = self._target.key if self._target is not None else 0
        late_ms = (t_ns - self._joint_deadline_ns) * 1e-6
        what = f"joint command {key} expired {late_ms:.1f} ms ago (end_time passed, no newer command)"
        goal = self._in_place_goal(self.snapshot, self.stand_offset, self._stand_q)
        self._start_motion(np.array([self.backend.state().q, goal]), IN_PLACE_S, settle=True)
        if self.expiry is ExpiryMode.STAND:
            self._lapsed_at = t_ns
            self._tell(
                "expiry",
                "joint control lapsed: the robot stands on its own",
                f"{what}: the robot stands on its own; joint control resumes with the next command in time "
                "(expiry=stand)",
            )
            return None
        record = self.commands.get(self.current_command)
        if record is not None:
            record.outcome = "end_time passed without a newer joint command"
        self.behaviour = Behaviour.STAND
        self._tell(
            "expiry",
            "joint control expired: robot stands on its own",
            f"{what}: joint control ended, the robot stands on its own; the stream ends STATUS_EXPIRED (expiry=end)",
        )
        return "STATUS_EXPIRED", f"joint control ended: {what}"

    def _motion_target(self) -> np.ndarray:
        """Where the motion in progress (or the last one) puts the joints now."""
        if self._motion is None:
            return self._last_motion_target.copy()
        path, t0, n = self._motion
        a = (self._steps - t0 + 1) / n
        x = _smooth(a) * (len(path) - 1)
        i = min(int(x), len(path) - 2)
        return path[i] + (path[i + 1] - path[i]) * (x - i)

    def _follow_motion(self) -> None:
        if self._motion is None:
            return
        _, t0, n = self._motion
        a = (self._steps - t0 + 1) / n
        self._last_motion_target = self._motion_target()
        self.backend.set_targets(self._last_motion_target)
        if a >= 1.0:
            self._motion = None
            if self._settle_after:
                self._settle_after = False
                if self.backend.state().base_pos[2] > FALL_HEIGHT_M:  # up on its legs (not fallen, not sitting)
                    self._stood, self._fallen = True, False
                self._settle()
            elif self._off_after_motion:
                self._off_after_motion = False
                self.behaviour = Behaviour.OFF
                self._motors_off()
                self._tell("power", "safely powered off", "safe power-off done: sitting, motor power off")

    def _start_motion(self, path: np.ndarray, seconds: float = MOTION_S, settle: bool = False) -> None:
        """The robot's own controller moves through ``path`` (rows of joint angles) over ``seconds``;
        ``settle``: then it settles its stand onto the feet where they are."""
        self._own_control()
        self._motion = (np.asarray(path, dtype=np.float64), self._steps, max(1, round(seconds / self.physics_dt)))
        self._settle_after = settle

    def _in_place_goal(self, snap: Snapshot, offset: BodyOffset, guess: np.ndarray) -> np.ndarray:
        """The stand at ``offset`` over the feet of ``snap`` (:meth:`_feet_down`)."""
        rot = _rotation(*(float(v) for v in snap.quat_wxyz))
        soles = snap.feet_body @ rot.T + snap.position  # world
        return self.kinematics.stand_on_feet(self._feet_down(soles, snap.contacts, snap.position, rot), offset, guess)

    def _feet_down(
        self, soles: np.ndarray, contacts: tuple[bool, ...], base: np.ndarray, rot: np.ndarray
    ) -> np.ndarray:
        """Foot centres (world) to stand on: a foot on the ground stays; one in the air goes down under its hip."""
        touching = [i for i, c in enumerate(contacts) if c]
        ground = float(soles[touching, 2].mean()) if touching else float(soles[:, 2].min())
        c, s = rot[0, 0], rot[1, 0]
        norm = math.hypot(c, s) or 1.0
        yaw = np.array([[c / norm, -s / norm, 0.0], [s / norm, c / norm, 0.0], [0.0, 0.0, 1.0]])
        stance = self.kinematics.nominal_feet @ yaw.T + base
        out = soles.copy()
        for i, down in enumerate(contacts):
            if not down:
                out[i, :2] = stance[i, :2]
        out[:, 2] = ground + self._foot_radius
        return out

    def _settle(self) -> None:
        """The stand re-planned over the feet where they are now (lock held)."""
        data = self.backend.mj_data
        goal = self.kinematics.stand_on_feet(data.geom_xpos[self._foot_geoms], self.stand_offset, self._stand_q)
        self._stand_q = goal  # the stand it holds now (its feet may not be under its hips)
        self._start_motion(np.array([self._motion_target(), goal]), SETTLE_S)

    def _supersede(self, why: str) -> None:
        record = self.commands.get(self.current_command)
        if record is not None and not record.outcome:
            record.outcome = why
        self.current_command = 0
        self._off_after_motion = False
        self._lapsed_at = None

    def _motors_off(self) -> None:
        self._stood = False
        self._set_damping(0.0)
        self.backend.set_gains(np.full(12, OFF_KP), np.full(12, OFF_KD))
        self.backend.set_targets(self.backend.state().q)

    def _own_control(self) -> None:
        """The robot's own controller: SDK gains and its own joint damping."""
        self._set_damping(OWN_DAMPING)
        self.backend.set_gains(ROBOT_KP, ROBOT_KD)

    def _client_control(self, kp: np.ndarray, kd: np.ndarray) -> None:
        """Joint control: the client's gains, nothing of the robot's own."""
        self._set_damping(0.0)
        self.backend.set_gains(kp, kd)

    def _set_damping(self, value: float) -> None:
        if float(self._damping[0]) != value:
            self._damping[:] = value
            self.backend.mj_model.dof_damping[self._dofs] = value

    def _sample_time_ns(self, t_ns: int) -> int:
        """The stamp of a sample taken at ``t_ns``: the physics step's own time, never repeated."""
        stamp = max(int(t_ns), self._last_stamp_ns + 1)
        self._last_stamp_ns = stamp
        return stamp

    def _snapshot_now(self, t_ns: int) -> None:
        s = self.backend.state()
        w, x, y, z = (float(v) for v in s.base_quat)
        rot = _rotation(w, x, y, z)
        data = self.backend.mj_data
        touching = set(data.contact.geom[: data.ncon].ravel().tolist())
        contacts = tuple(g in touching for g in self._foot_geom_ids)
        # Each foot's sole in the body frame: R^T (centre - base) minus the radius along gravity.
        feet = (data.geom_xpos[self._foot_geoms] - s.base_pos) @ rot - rot[2] * self._foot_radius
        if self._stood and not self._fallen and self.behaviour in (Behaviour.STAND, Behaviour.JOINT, Behaviour.HOLD):
            z, upright = float(s.base_pos[2]), float(rot[2, 2])
            if z < FALL_HEIGHT_M or upright < FALL_UPRIGHT_MIN:
                self._fallen = True
                self.counters["falls"] += 1
                self._tell(
                    "fall",
                    "fell",
                    f"Spot fell in {self.behaviour.value}: base {z:.2f} m above the floor, tilted "
                    f"{math.degrees(math.acos(max(-1.0, min(1.0, upright)))):.0f} deg",
                )
        self._seq += 1
        self.counters["state_snapshots"] += 1
        self.snapshots.append(
            Snapshot(
                seq=self._seq,
                robot_ns=self._sample_time_ns(t_ns),
                ready_at=time.monotonic() + self.latency_s,
                q=s.q,
                dq=s.dq,
                tau=s.tau - self._damping * s.dq,
                position=s.base_pos,
                quat_wxyz=s.base_quat,
                lin_vel_odom=rot @ s.base_lin_vel_body,
                ang_vel_odom=rot @ s.base_ang_vel_body,
                acc_body=s.imu_lin_acc - rot.T @ np.array([0.0, 0.0, 9.81]),
                ang_vel_body=s.base_ang_vel_body,
                contacts=contacts,
                feet_body=feet,
                last_key=self.last_key,
                last_received_ns=self.last_received_ns,
                motor_power_on=self.motor_power_on,
            )
        )

    @property
    def snapshot(self) -> Snapshot:
        """The newest state sample."""
        return self.snapshots[-1]


def _rotation(w: float, x: float, y: float, z: float) -> np.ndarray:
    n = math.sqrt(w * w + x * x + y * y + z * z) or 1.0
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
