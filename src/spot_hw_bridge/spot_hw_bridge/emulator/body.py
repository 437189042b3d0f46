"""The emulated robot's body: MuJoCo Spot (the sim bridge's model) run by the robot's own controllers.

What the API services ask of the robot happens here, in real time, on a physics thread:

- motors off: a weak hold of the legs where they were (back-driven gearboxes);
- power on, stand, sit, safe power-off: the robot's own joint-space motions with its own holding
  gains (Spot's SDK defaults, hx 624/5.2, hy 936/5.2, kn 286/2.04 N·m/rad, N·m·s/rad);
- joint control: PD on the streamed targets with the streamed gains (``k_q_p``, ``k_qd_p``; the
  first message sets them, later ones may omit them). A command arriving after its ``end_time``
  is ignored; when the newest command's ``end_time`` passes, joint control ends and the robot
  stands on its own (the emulator's stand-in for the robot's safety behaviour). Feed-forward
  ``load`` and ``velocity`` targets are accepted and ignored (the bridge sends zeros);
- E-Stop: motor power cut at once.

State snapshots are taken at ``state_rate_hz`` (Spot streams about 333 Hz) and handed to the
state stream with an optional added latency. Joint arrays here are in Isaac order (MujocoSpot's);
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

from spot_policy.core import contract

ISAAC = contract.ISAAC_JOINT_ORDER
SDK = contract.SDK_JOINT_ORDER
SDK_FROM_ISAAC = np.array(contract.index_map(ISAAC, SDK), dtype=np.intp)  # sdk_array = isaac_array[this]
ISAAC_FROM_SDK = np.array(contract.index_map(SDK, ISAAC), dtype=np.intp)

_GAINS = {"hx": (624.0, 5.20), "hy": (936.0, 5.20), "kn": (286.0, 2.04)}
ROBOT_KP = np.array([_GAINS[n.split("_")[1]][0] for n in ISAAC])
ROBOT_KD = np.array([_GAINS[n.split("_")[1]][1] for n in ISAAC])
#: Motors off: the back-driven gearboxes hold the legs loosely where they were (a weak PD on the
#: pose at power-off). With free joints the folded legs would splay under the resting body and the
#: stand-up would drag the feet back in, leaving friction preloads that a kp-60 policy then meets.
OFF_KP, OFF_KD = 30.0, 2.0

#: The robot's own stand: the Isaac Lab default (nominal) pose, so a policy takes over where it
#: starts in simulation. (A real Spot's own stand posture differs.)
STAND_POSE: dict[str, float] = {
    **{f"{leg}_hx": (0.1 if leg.endswith("l") else -0.1) for leg in contract.LEGS},
    **{f"{leg}_hy": (0.9 if leg.startswith("f") else 1.1) for leg in contract.LEGS},
    **{f"{leg}_kn": -1.5 for leg in contract.LEGS},
}
SIT_POSE: dict[str, float] = {
    **{f"{leg}_hx": (0.1 if leg.endswith("l") else -0.1) for leg in contract.LEGS},
    **{f"{leg}_hy": (1.7 if leg.startswith("f") else 1.75) for leg in contract.LEGS},
    **{f"{leg}_kn": -2.7 for leg in contract.LEGS},
}
MOTION_S = 1.0  # stand up / sit down duration
POWER_ON_S = 0.3
#: After activation without any command yet, the robot holds its pose this long before giving up.
FIRST_COMMAND_GRACE_NS = 500_000_000


class Behaviour(str, Enum):
    OFF = "off"
    POWERING_ON = "powering_on"
    HOLD = "hold"
    STAND = "stand"
    SIT = "sit"
    SAFE_POWER_OFF = "safe_power_off"
    JOINT = "joint_control"


@dataclass
class JointTarget:
    q: np.ndarray  # Isaac order
    end_ns: int  # robot clock
    key: int


@dataclass(frozen=True)
class Snapshot:
    """One state sample (Isaac order arrays), as the state services report it."""

    seq: int
    robot_ns: int
    ready_at: float  # time.monotonic() at which it may be sent (added latency)
    q: np.ndarray
    dq: np.ndarray
    tau: np.ndarray
    position: np.ndarray  # odom = world
    quat_wxyz: np.ndarray
    lin_vel_odom: np.ndarray
    ang_vel_odom: np.ndarray
    acc_body: np.ndarray  # acceleration relative to odom, in the body (= IMU link) frame
    ang_vel_body: np.ndarray
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

    def __init__(self, robot_clock_ns: Callable[[], int], state_rate_hz: float = 333.0, physics_dt: float = 0.002):
        from spot_sim_bridge.backends.mujoco import MujocoSpot

        self.clock_ns = robot_clock_ns
        self.backend = MujocoSpot(physics_dt=physics_dt)
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
            "state_snapshots": 0,
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_joint_end: Callable[[str, str], None] = lambda status, message: None
        self.reset()

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        """Sitting on the floor, motors off, no commands."""
        with self.lock:
            self.backend.reset(SIT_POSE)
            self.behaviour = Behaviour.OFF
            self._motors_off()
            self._steps = 0
            self._dt_ns = round(self.physics_dt * 1e9)
            self._step_time_ns = self.clock_ns()
            self._last_stamp_ns = 0
            self._next_state = 0.0
            self._motion: tuple[np.ndarray, np.ndarray, int, int] | None = None
            self._power_on_at: int | None = None
            self._off_after_motion = False
            self.commands: dict[int, CommandRecord] = {}
            self.current_command = 0
            self._next_id = 1
            self._target: JointTarget | None = None
            self._joint_kp = ROBOT_KP.copy()
            self._joint_kd = ROBOT_KD.copy()
            self._joint_deadline_ns = 0
            self._applied_key = -1
            self.last_key = 0
            self.last_received_ns = 0
            self._arriving: deque[tuple] = deque()
            self.snapshots: deque[Snapshot] = deque(maxlen=512)  # the stream sends each, in order
            self._seq = 0
            self._snapshot_now()

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
    def joint_gains(self) -> tuple[np.ndarray, np.ndarray]:
        """(kp, kd) of joint control in SDK order: the last ones a stream sent, else the robot's own."""
        with self.lock:
            return self._joint_kp[SDK_FROM_ISAAC].copy(), self._joint_kd[SDK_FROM_ISAAC].copy()

    @property
    def time_s(self) -> float:
        return self._steps * self.physics_dt

    def note(self, what: str) -> None:
        self.events.append((time.monotonic(), what))

    # ------------------------------------------------------------------ what the services ask
    def power_on(self) -> None:
        with self.lock:
            if self.behaviour is Behaviour.OFF:
                self.behaviour = Behaviour.POWERING_ON
                self._power_on_at = self._steps + round(POWER_ON_S / self.physics_dt)
                self.note("power on")

    def cut_power(self, why: str) -> None:
        """Motors off now (E-Stop cut, power off request)."""
        with self.lock:
            was_joint = self.behaviour is Behaviour.JOINT
            self.behaviour = Behaviour.OFF
            self._motion = None
            self._power_on_at = None
            self._motors_off()
            self._supersede(why)
            self.note(f"motor power cut: {why}")
        if was_joint:
            self.on_joint_end("STATUS_INACTIVE", f"joint control ended: motor power cut ({why})")

    def command(self, kind: str) -> int:
        """A full-body or mobility command (stand, sit, safe_power_off, joint); returns its id."""
        with self.lock:
            was_joint = self.behaviour is Behaviour.JOINT
            self._supersede(f"superseded by a {kind} command")
            command_id = self._next_id
            self._next_id += 1
            self.commands[command_id] = CommandRecord(kind, self.clock_ns())
            self.current_command = command_id
            self.note(f"{kind} command")
            if kind == "joint":
                self.behaviour = Behaviour.JOINT
                self._joint_deadline_ns = self.clock_ns() + FIRST_COMMAND_GRACE_NS
                if self._target is None or self._target.end_ns <= self.clock_ns():
                    self._target = JointTarget(self.backend.state().q, self._joint_deadline_ns, 0)
                self._applied_key = -1
            else:
                goal = STAND_POSE if kind == "stand" else SIT_POSE
                self.behaviour = {"stand": Behaviour.STAND, "sit": Behaviour.SIT}.get(kind, Behaviour.SAFE_POWER_OFF)
                self._start_motion(goal)
                self._off_after_motion = kind == "safe_power_off"
        if was_joint and kind != "joint":
            self.on_joint_end("STATUS_INACTIVE", f"joint control ended: superseded by a {kind} command")
        return command_id

    def stream_started(self) -> None:
        """A new joint command stream: until it sends gains, the robot's own holding gains apply."""
        with self.lock:
            self._joint_kp, self._joint_kd = ROBOT_KP.copy(), ROBOT_KD.copy()
            self._applied_key = -1

    def joint_command(self, q_sdk: np.ndarray, kp_sdk, kd_sdk, end_ns: int, key: int, delay_ns: int = 0) -> None:
        """One streamed command; it reaches the robot ``delay_ns`` from now (added latency)."""
        with self.lock:
            item = (self.clock_ns() + int(delay_ns), q_sdk, kp_sdk, kd_sdk, int(end_ns), int(key))
            if delay_ns > 0:
                self._arriving.append(item)
            else:
                self._arrive(*item)

    def _arrive(self, now: int, q_sdk, kp_sdk, kd_sdk, end_ns: int, key: int) -> None:
        """A command arrives (lock held): ignored if already past its end_time, else the newest target."""
        self.last_key, self.last_received_ns = key, now
        if end_ns <= now:
            self.counters["joint_commands_expired_on_arrival"] += 1
            return
        self.counters["joint_commands"] += 1
        if kp_sdk is not None:
            self._joint_kp = np.asarray(kp_sdk, dtype=np.float64)[ISAAC_FROM_SDK]
            self._joint_kd = np.asarray(kd_sdk, dtype=np.float64)[ISAAC_FROM_SDK]
            self._applied_key = -1
        self._target = JointTarget(np.asarray(q_sdk, dtype=np.float64)[ISAAC_FROM_SDK], end_ns, key)

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

    # ------------------------------------------------------------------ physics thread
    def _run(self) -> None:
        from spot_sim_bridge.core.bridge import RealtimePacer

        pacer = RealtimePacer(self.physics_dt)
        while not self._stop.is_set():
            due = pacer.wait()
            # Physics runs in bursts when this thread wakes late: step i of the burst belongs to its
            # own 2 ms slot, so the samples' acquisition stamps stay 2-4 ms apart as the samples are.
            wake_ns = self.clock_ns()
            for i in range(due):
                ended = None
                with self.lock:
                    self._step_time_ns = wake_ns - (due - 1 - i) * self._dt_ns
                    ended = self._control()
                    self.backend.step(1)
                    self._steps += 1
                    snap = self._steps >= self._next_state
                    if snap:
                        self._next_state += self.state_period_steps
                        if self._next_state <= self._steps:
                            self._next_state = self._steps + self.state_period_steps
                        self._snapshot_now()
                if ended is not None:
                    self.on_joint_end(*ended)
                if snap:
                    with self.snapshot_ready:
                        self.snapshot_ready.notify_all()

    def _control(self) -> tuple[str, str] | None:
        """The robot's controller for this physics step (lock held); a joint-control end to report."""
        if self._arriving:
            now = self.clock_ns()
            while self._arriving and self._arriving[0][0] <= now:
                self._arrive(*self._arriving.popleft())
        b = self.behaviour
        if b is Behaviour.POWERING_ON and self._power_on_at is not None and self._steps >= self._power_on_at:
            q = self.backend.state().q
            self.behaviour = Behaviour.HOLD
            self._power_on_at = None
            self._set_gains(ROBOT_KP, ROBOT_KD)
            self.backend.set_targets(q)
            self.note("motor power on")
        elif b is Behaviour.JOINT:
            now = self.clock_ns()
            target = self._target
            if target is None or now > max(target.end_ns, self._joint_deadline_ns if target.key == 0 else 0):
                self.counters["joint_control_expiries"] += 1
                record = self.commands.get(self.current_command)
                if record is not None:
                    record.outcome = "end_time passed without a newer joint command"
                self.behaviour = Behaviour.STAND
                self._start_motion(STAND_POSE)
                self.note("joint control expired: robot stands on its own")
                return "STATUS_EXPIRED", "joint command expired: end_time passed without a newer command"
            if target.key != self._applied_key:
                self._applied_key = target.key
                self._set_gains(self._joint_kp, self._joint_kd)
                self.backend.set_targets(target.q)
        elif self._motion is not None:
            start, goal, t0, n = self._motion
            a = (self._steps - t0 + 1) / n
            self.backend.set_targets(start + (goal - start) * _smooth(a))
            if a >= 1.0:
                self._motion = None
                if self._off_after_motion:
                    self._off_after_motion = False
                    self.behaviour = Behaviour.OFF
                    self._motors_off()
                    self.note("safely powered off")
        return None

    def _start_motion(self, pose: dict[str, float]) -> None:
        start = self.backend.state().q
        goal = np.array([pose[n] for n in ISAAC])
        self._set_gains(ROBOT_KP, ROBOT_KD)
        self._motion = (start, goal, self._steps, max(1, round(MOTION_S / self.physics_dt)))

    def _supersede(self, why: str) -> None:
        record = self.commands.get(self.current_command)
        if record is not None and not record.outcome:
            record.outcome = why
        self.current_command = 0
        self._off_after_motion = False

    def _motors_off(self) -> None:
        self._set_gains(np.full(12, OFF_KP), np.full(12, OFF_KD))
        self.backend.set_targets(self.backend.state().q)

    def _set_gains(self, kp: np.ndarray, kd: np.ndarray) -> None:
        self.backend.set_gains(kp, kd)

    def _sample_time_ns(self) -> int:
        """The robot-clock time of the current physics step (set by the physics loop; never repeats)."""
        stamp = max(self._step_time_ns, self._last_stamp_ns + 1)
        self._last_stamp_ns = stamp
        return stamp

    def _snapshot_now(self) -> None:
        s = self.backend.state()
        w, x, y, z = (float(v) for v in s.base_quat)
        rot = _rotation(w, x, y, z)
        self._seq += 1
        self.counters["state_snapshots"] += 1
        self.snapshots.append(
            Snapshot(
                seq=self._seq,
                robot_ns=self._sample_time_ns(),
                ready_at=time.monotonic() + self.latency_s,
                q=s.q,
                dq=s.dq,
                tau=s.tau,
                position=s.base_pos,
                quat_wxyz=s.base_quat,
                lin_vel_odom=rot @ s.base_lin_vel_body,
                ang_vel_odom=rot @ s.base_ang_vel_body,
                acc_body=s.imu_lin_acc - rot.T @ np.array([0.0, 0.0, 9.81]),
                ang_vel_body=s.base_ang_vel_body,
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
