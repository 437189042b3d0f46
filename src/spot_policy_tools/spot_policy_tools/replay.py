"""``spot-policy replay BAG --policy P``: re-run a recorded bag through the policy core, offline.

No DDS and no rclpy: the bag is read with ``rosbags``, its inputs go to a fresh
:class:`~spot_policy.core.controller.PolicyController` with the ONNX model, and what comes out is
compared with what the policy node published: ``joint_command`` per joint, the observation per
term, the raw action per joint. Exit status 1 when anything differs by more than the tolerance.

How the node's life is put back together (the node's debug stream, :mod:`spot_policy.ros.debug_stream`,
must be in the bag; the recorder's default topics and ``publish_debug: true`` give it):

- Order: the node numbers its step records and events (``seq``); replay walks them in that order.
  Before each one it feeds the inputs the node had received by then, in the bag's receive order:
  joint_states, imu and odom up to the message whose header stamp the node names as its newest.
  cmd_vel comes from the node's own record, not the bag's /cmd_vel: each step record and event
  carries the values of the newest cmd_vel the node had and its arrival, so a replay hands the
  controller exactly that command whatever the recorder received (a recorder in another process
  can see a message the node never got, or miss one it got). So which inputs a step saw does not
  depend on DDS delivery order in the recorder.
- Time: each input is given to the controller with its receive time: the node's own clock for
  the newest message of each input (recorded), the recorder's for those in between (which only
  the fault checks on them see); header stamps go in as stamps. Steps and mode switches run at the
  node's recorded clock time, so stand interpolation and every watchdog age come out the same.
- Mode switches: replayed from the recorded ``request``/``reset`` events (``~/stand``, ``~/walk``,
  ``~/stop`` and ``~/reset`` calls, accepted or not), at their recorded time and input position;
  nothing is inferred from the command stream. Faults are *not* replayed: the controller must
  reach them by itself. A fault the node found outside any input or step (the watchdog timer)
  is checked for at the recorded time; the controller's messages (mode entries, faults, cmd_vel
  timeouts) are compared one by one.

Without ``--policy`` the replay uses the policy the recording names (its ``start`` event), checked
against the recorded ONNX SHA-256. With a policy whose ONNX file differs from the recorded one, the
same run compares the two policies' actions on the recorded inputs and passes no verdict.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spot_policy.core import contract, paths
from spot_policy.core.controller import ControllerConfig, Mode, PolicyController
from spot_policy.ros import debug_stream as debug
from spot_policy.ros.bag_recorder import default_typestore, deserialize_cdr

if TYPE_CHECKING:
    from spot_policy.core.loader import LoadedPolicy

REPORT_NAME = "replay.json"
PLOT_NAME = "replay.png"
DEFAULT_TOLERANCE = 1e-6

#: What replay reads: kind -> (topic relative to the node's namespace, message type).
TOPICS: dict[str, tuple[str, str]] = {
    "joint_states": (contract.TOPIC_JOINT_STATES, "sensor_msgs/msg/JointState"),
    "imu": (contract.TOPIC_IMU, "sensor_msgs/msg/Imu"),
    "odom": (contract.TOPIC_ODOM, "nav_msgs/msg/Odometry"),
    "cmd_vel": (contract.TOPIC_CMD_VEL, "geometry_msgs/msg/Twist"),
    "joint_command": (contract.TOPIC_JOINT_COMMAND, "sensor_msgs/msg/JointState"),
    "step": (f"policy_node/{debug.TOPIC_STEP}", "std_msgs/msg/Int64MultiArray"),
    "events": (f"policy_node/{debug.TOPIC_EVENTS}", "std_msgs/msg/String"),
    "observation": (f"policy_node/{debug.TOPIC_OBSERVATION}", "std_msgs/msg/Float32MultiArray"),
    "action": (f"policy_node/{debug.TOPIC_ACTION}", "std_msgs/msg/Float32MultiArray"),
}
REQUIRED = ("joint_command", "step", "events")
FIX_DEBUG = (
    "record the policy node with publish_debug: true (the default) and the recorder's default topics "
    "(record:=true or spot-policy sim do both)"
)


class ReplayError(ValueError):
    """A bag that cannot be replayed (missing, damaged, lacking a topic, wrong types, incomplete)."""


@dataclass(frozen=True)
class InputMessage:
    """One recorded input: where it is in the bag, when the recorder got it, what it says."""

    order: int  # position in the bag's receive order
    t_ns: int  # receive time (the recorder's clock)
    stamp_ns: int  # header stamp (0 for cmd_vel)
    stamp: float  # header stamp in seconds, computed as the node computes it
    values: tuple[Any, ...]


@dataclass(frozen=True)
class RecordedCommand:
    t_ns: int
    stamp_ns: int
    names: tuple[str, ...]
    positions: np.ndarray


@dataclass(frozen=True)
class SyncPoint:
    """A step record or an event of the node, with the inputs it had received by then."""

    seq: int
    kind: str  # "step", or the event's name: "request", "reset", "log"
    t_ns: int
    view: dict[str, list[int]]
    event: dict[str, Any] | None = None


@dataclass
class Recording:
    """Everything replay needs from a bag, decoded."""

    bag: Path
    start: dict[str, Any] | None
    points: list[SyncPoint]
    inputs: dict[str, list[InputMessage]]
    commands: list[RecordedCommand]
    observations: list[np.ndarray]
    actions: list[np.ndarray]
    topics: dict[str, str]  # kind -> topic name in the bag
    notes: list[str] = field(default_factory=list)


# --- reading ----------------------------------------------------------------------------------


def _find_topic(topics: Sequence[str], name: str, bag: Path) -> str | None:
    """``/name`` exactly, else the one topic ending in ``/name`` (a namespaced bring-up)."""
    if f"/{name}" in topics or name in topics:
        return f"/{name}" if f"/{name}" in topics else name
    suffixed = sorted(t for t in topics if t.endswith(f"/{name}"))
    if len(suffixed) > 1:
        raise ReplayError(f"{bag}: topic {name} is ambiguous ({', '.join(suffixed)}); fix: record one robot per bag")
    return suffixed[0] if suffixed else None


def _stamp(header: Any) -> tuple[int, float]:
    s = header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec), s.sec + s.nanosec * 1e-9


def _decode_input(kind: str, msg: Any) -> tuple[int, float, tuple[Any, ...]]:
    if kind == "cmd_vel":
        return 0, 0.0, (float(msg.linear.x), float(msg.linear.y), float(msg.angular.z))
    stamp_ns, stamp = _stamp(msg.header)
    if kind == "joint_states":
        values = (tuple(msg.name), np.asarray(msg.position, float), np.asarray(msg.velocity, float))
        return stamp_ns, stamp, (*values, np.asarray(msg.effort, float))
    if kind == "imu":
        o, w = msg.orientation, msg.angular_velocity
        return stamp_ns, stamp, ((o.x, o.y, o.z, o.w), (w.x, w.y, w.z))
    v = msg.twist.twist.linear
    return stamp_ns, stamp, ((v.x, v.y, v.z),)


def _event_record(text: str, topic: str, bag: Path) -> dict[str, Any]:
    try:
        record = json.loads(text)
        if isinstance(record, dict) and "seq" in record and "event" in record:
            return record
    except ValueError:
        pass
    raise ReplayError(f"{bag}: a {topic} message is not an event record: {text[:120]!r}; fix: {FIX_DEBUG}")


def read_recording(bag: str | Path) -> Recording:
    """Decode a rosbag2 bag (folder or ``.mcap``) for replay; raises :class:`ReplayError` with a fix."""
    from rosbags.rosbag2 import Reader

    bag = Path(bag)
    if not bag.exists():
        raise ReplayError(f"{bag}: no such bag; fix: give a rosbag2 bag folder (with metadata.yaml) or its .mcap")
    typestore = default_typestore()
    inputs: dict[str, list[InputMessage]] = {k: [] for k in debug.INPUT_KINDS}
    commands: list[RecordedCommand] = []
    observations: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    steps: list[tuple[int, list[int]]] = []
    events: list[dict[str, Any]] = []
    try:
        with Reader(bag) as reader:
            names = [c.topic for c in reader.connections]
            found: dict[str, Any] = {}
            for kind, (name, msgtype) in TOPICS.items():
                topic = _find_topic(names, name, bag)
                if topic is None:
                    continue
                conns = [c for c in reader.connections if c.topic == topic]
                wrong = sorted({c.msgtype for c in conns if c.msgtype != msgtype})
                if wrong:
                    raise ReplayError(
                        f"{bag}: topic {topic} has type {', '.join(wrong)}, expected {msgtype}; "
                        "fix: record the contract's types (spot_policy.core.contract, spot_policy.ros.debug_stream)"
                    )
                found[kind] = conns
            missing = [k for k in REQUIRED if k not in found]
            if missing:
                have = ", ".join(sorted(set(names))) or "no topics"
                wanted = ", ".join(f"{TOPICS[k][0]} ({TOPICS[k][1]})" for k in missing)
                raise ReplayError(f"{bag}: lacks {wanted} (it has: {have}); fix: {FIX_DEBUG}")
            kind_of = {c.id: kind for kind, conns in found.items() for c in conns}
            connections = [c for conns in found.values() for c in conns]
            unreadable = 0
            for order, (conn, t_ns, raw) in enumerate(reader.messages(connections=connections)):
                kind = kind_of[conn.id]
                try:
                    msg = deserialize_cdr(typestore, raw, conn.msgtype)
                except Exception:
                    if kind not in inputs:
                        raise
                    unreadable += 1  # a payload no reader can read: the node could not either (bad_input)
                    continue
                if kind in inputs:
                    stamp_ns, stamp, values = _decode_input(kind, msg)
                    inputs[kind].append(InputMessage(order, int(t_ns), stamp_ns, stamp, values))
                elif kind == "joint_command":
                    stamp_ns, _ = _stamp(msg.header)
                    commands.append(RecordedCommand(int(t_ns), stamp_ns, tuple(msg.name), np.asarray(msg.position)))
                elif kind == "step":
                    values = [int(v) for v in msg.data]
                    if len(values) != len(debug.STEP_FIELDS):
                        raise ReplayError(
                            f"{bag}: a {conn.topic} record has {len(values)} fields, this replay reads "
                            f"{len(debug.STEP_FIELDS)}; fix: replay with the spot_policy version that recorded it"
                        )
                    steps.append((order, values))
                elif kind == "events":
                    events.append(_event_record(msg.data, conn.topic, bag))
                elif kind == "observation":
                    observations.append(np.asarray(msg.data, dtype=np.float32))
                else:
                    actions.append(np.asarray(msg.data, dtype=np.float32))
    except ReplayError:
        raise
    except Exception as exc:  # rosbags raises many kinds for a truncated or damaged file: say which bag, once
        raise ReplayError(
            f"{bag}: cannot read the bag ({type(exc).__name__}: {exc}); fix: a bag cut short (recorder killed, "
            "copy interrupted) lacks its MCAP summary or metadata.yaml: spot-policy recover BAG makes it readable up "
            "to the cut, or copy it again"
        ) from exc
    topics = {kind: conns[0].topic for kind, conns in found.items()}
    # Each state topic in stamp order: a recorder that matched a transient-local publisher late gets
    # the history it missed after newer messages (the node got them in order).
    for kind in ("joint_states", "imu", "odom"):
        inputs[kind].sort(key=lambda m: (m.stamp_ns, m.order))
    rec = _assemble(bag, inputs, commands, observations, actions, steps, events, topics)
    if unreadable:
        rec.notes.append(f"{unreadable} input message(s) in the bag cannot be read (the node counted them as bad)")
    return rec


def _assemble(
    bag: Path,
    inputs: dict[str, list[InputMessage]],
    commands: list[RecordedCommand],
    observations: list[np.ndarray],
    actions: list[np.ndarray],
    steps: list[tuple[int, list[int]]],
    events: list[dict[str, Any]],
    topics: dict[str, str],
) -> Recording:
    starts = [e for e in events if e["event"] == "start"]
    if len(starts) > 1:
        raise ReplayError(
            f"{bag}: holds {len(starts)} runs of the policy node (one 'start' event each); "
            "fix: replay a bag of one run (the node restarted while recording)"
        )
    notes: list[str] = []
    if not starts:
        notes.append("no 'start' event: the controller config is the node's default, the policy is not checked")
    points = [SyncPoint(v[0], "step", v[1], debug.view_from_step(v)) for _, v in steps]
    points += [
        SyncPoint(int(e["seq"]), str(e["event"]), int(e.get("t_ns", 0)), e.get("inputs") or {}, e)
        for e in events
        if e["event"] != "start"
    ]
    points.sort(key=lambda p: p.seq)
    if not any(p.kind == "step" for p in points):
        raise ReplayError(f"{bag}: the policy node published no joint_command while recording; nothing to replay")
    seqs = [p.seq for p in points]
    expected = list(range(1, len(points) + 1))
    if seqs != expected:
        have = set(seqs)
        gaps = [s for s in range(1, max(seqs) + 1) if s not in have]
        dup = len(seqs) - len(have)
        what = f"{len(gaps)} missing (first: {gaps[:5]})" if gaps else f"{dup} repeated"
        raise ReplayError(
            f"{bag}: the policy node's step/event records are incomplete: {what}; fix: the recording must "
            "cover the node from before its first stand/walk, with nothing dropped (record:=true starts the "
            "recorder with the nodes)"
        )
    return Recording(bag, starts[0] if starts else None, points, inputs, commands, observations, actions, topics, notes)


# --- replaying --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One input to hand to the node before a sync point."""

    kind: str
    message: InputMessage
    recv_ns: int  # when the node received it (its clock)
    index: int | None  # position in rec.inputs[kind]; None for cmd_vel (taken from the node's record)


class InputSchedule:
    """Which inputs reach the node before each sync point, in receive order, and when.

    Shared by the offline replay (which hands them to a controller) and the in-ROS replay test
    (which publishes them over DDS).
    """

    STATE_KINDS = ("joint_states", "imu", "odom")

    def __init__(self, rec: Recording) -> None:
        self.rec = rec
        self.next = dict.fromkeys(self.STATE_KINDS, 0)
        self.offset: dict[str, int | None] = dict.fromkeys(self.STATE_KINDS)
        self.cmd_vel_n = 0
        self.superseded = 0  # cmd_vel messages the node replaced before any step or event saw them
        self.notes: list[str] = []

    def _topic(self, kind: str) -> str:
        return self.rec.topics.get(kind, TOPICS[kind][0])

    def _target(self, kind: str, entry: list[int], seq: int) -> int | None:
        """Index of the newest message of ``kind`` the node had at ``seq`` (None: none yet)."""
        n = int(entry[0]) if entry else 0
        if n <= 0:
            return None
        msgs = self.rec.inputs[kind]
        if not msgs:
            raise ReplayError(
                f"{self.rec.bag}: the policy node had received {n} {kind} message(s) by record {seq}, but the bag "
                f"has no {self._topic(kind)}; fix: record every contract topic"
            )
        low = max(0, self.next[kind] - 1)  # the last message fed may still be the newest
        guess = n - 1 - (self.offset[kind] or 0)
        stamp_ns = int(entry[1])
        if low <= guess < len(msgs) and msgs[guess].stamp_ns == stamp_ns:
            return guess
        matches = [j for j in range(low, len(msgs)) if msgs[j].stamp_ns == stamp_ns]
        if not matches:
            raise ReplayError(
                f"{self.rec.bag}: {self._topic(kind)} stamped {stamp_ns * 1e-9:.9f} s, the newest the policy node "
                f"had by record {seq}, is not in the bag (the recorder lost it: sensor topics are best effort, and a "
                "loaded machine drops some in real time); fix: re-record, e.g. in lockstep"
            )
        index = min(matches, key=lambda j: abs(j - guess))
        if self.offset[kind] is not None:
            self.notes.append(f"{kind}: the node and the recorder did not get the same messages (record {seq})")
        self.offset[kind] = n - 1 - index
        return index

    def _cmd_vel(self, entry: list[int], seq: int) -> Delivery | None:
        """The node's newest cmd_vel, when it is one the replay has not handed over yet."""
        n = int(entry[0]) if entry else 0
        if n <= self.cmd_vel_n:
            return None
        values = debug.command_of(entry)
        if values is None:
            raise ReplayError(
                f"{self.rec.bag}: record {seq} does not say which cmd_vel the node had (recorded by an older "
                "spot_policy); fix: replay with the version that recorded it, or re-record"
            )
        # Messages superseded before any step or event saw them changed nothing the node did but its
        # clip counter: the newest is the one every later step used.
        self.superseded += n - self.cmd_vel_n - 1
        self.cmd_vel_n = n
        recv_ns = int(entry[1])
        return Delivery("cmd_vel", InputMessage(-1, recv_ns, 0, 0.0, values), recv_ns, None)

    def due(self, point: SyncPoint) -> list[Delivery]:
        """What to deliver before ``point``: the node's newest cmd_vel, then the state inputs in the
        bag's receive order."""
        targets = {}
        for kind in self.STATE_KINDS:
            index = self._target(kind, point.view.get(kind, []), point.seq)
            if index is not None:
                targets[kind] = index
        batch = sorted(
            (self.rec.inputs[kind][j].order, kind, j)
            for kind, index in targets.items()
            for j in range(self.next[kind], index + 1)
        )
        newest = {kind: int(point.view[kind][2]) for kind in targets}
        # cmd_vel first: it arrived before this sync point, and a node stepping on joint_states
        # (input trigger) must have it before the state that completes the instant.
        command = self._cmd_vel(point.view.get("cmd_vel", []), point.seq)
        out = [] if command is None else [command]
        for _, kind, j in batch:
            # The newest message of each input arrives at the node's own recorded time; the ones
            # before it (superseded before any step) at the recorder's, but no later than the newest
            # (a busy recorder stamps late).
            m = self.rec.inputs[kind][j]
            out.append(Delivery(kind, m, newest[kind] if j == targets[kind] else min(m.t_ns, newest[kind]), j))
        for kind, index in targets.items():
            self.next[kind] = max(self.next[kind], index + 1)
        return out


def _deliver(controller: PolicyController, kind: str, m: InputMessage, now: float) -> None:
    """One input to the controller, as the node's subscription callback passes it."""
    if kind == "joint_states":
        controller.joint_state(m.values[0], m.values[1], m.values[2], now, m.stamp, m.values[3])
    elif kind == "imu":
        controller.imu(m.values[0], m.values[1], now, m.stamp)
    elif kind == "odom":
        controller.odom(m.values[0], now, m.stamp)
    else:
        controller.cmd_vel(m.values[0], m.values[1], m.values[2], now)


@dataclass(frozen=True)
class Divergence:
    step: int  # index among the step records
    seq: int
    t_s: float  # seconds since the first step
    what: str
    error: float

    def to_dict(self) -> dict[str, object]:
        return {"step": self.step, "seq": self.seq, "t_s": self.t_s, "what": self.what, "error": self.error}


@dataclass
class ReplayReport:
    bag: str
    policy: str
    recorded_policy: str | None
    mode: str  # "regression" (same ONNX: pass/fail) or "comparison" (another policy: report only)
    tolerance: float
    steps: int
    walk_steps: int
    joints: list[str]
    command_max: np.ndarray
    command_mean: np.ndarray
    action_joints: list[str]
    action_max: np.ndarray
    action_mean: np.ndarray
    obs_terms: list[str]
    obs_max: np.ndarray
    obs_mean: np.ndarray
    missing_commands: int  # steps where the node published and the replay did not
    event_mismatches: list[str]
    first_divergence: Divergence | None
    t: np.ndarray = field(repr=False)  # seconds since the first step, per step record
    recorded: np.ndarray = field(repr=False)  # (steps, 12) recorded joint_command positions (NaN: not in bag)
    replayed: np.ndarray = field(repr=False)  # (steps, 12) replayed (NaN: replay published nothing)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool | None:
        """None for a comparison of two policies; else whether the replay matched within tolerance."""
        return None if self.mode == "comparison" else self.first_divergence is None

    def to_dict(self) -> dict[str, object]:
        def per(names: list[str], mx: np.ndarray, mean: np.ndarray) -> dict[str, dict[str, float]]:
            return {n: {"max": float(a), "mean": float(b)} for n, a, b in zip(names, mx, mean, strict=True)}

        return {
            "bag": self.bag,
            "policy": self.policy,
            "recorded_policy": self.recorded_policy,
            "mode": self.mode,
            "tolerance": self.tolerance,
            "passed": self.passed,
            "steps": self.steps,
            "walk_steps": self.walk_steps,
            "missing_commands": self.missing_commands,
            "joint_command_error_rad": per(self.joints, self.command_max, self.command_mean),
            "action_error": per(self.action_joints, self.action_max, self.action_mean),
            "observation_error": per(self.obs_terms, self.obs_max, self.obs_mean),
            "event_mismatches": self.event_mismatches,
            "first_divergence": None if self.first_divergence is None else self.first_divergence.to_dict(),
            "definitions": {
                "error": "absolute difference replayed - recorded; max and mean over the compared steps "
                "(and over a term's elements)",
                "first_divergence": "the first step record (in the node's order) where a joint target, an "
                "observation element or a raw action differs by more than the tolerance, the replay published "
                "nothing, or the controller's messages or answers differ",
            },
            "notes": self.notes,
        }


def _errors(rec: np.ndarray, rep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column max and mean |rep - rec| over rows where both exist (NaN columns: nothing compared)."""
    if rec.size == 0:
        return np.full(rec.shape[1:], np.nan), np.full(rec.shape[1:], np.nan)
    diff = np.abs(rep.astype(np.float64) - rec.astype(np.float64))
    ok = ~np.isnan(diff).all(axis=1)
    if not ok.any():
        return np.full(rec.shape[1], np.nan), np.full(rec.shape[1], np.nan)
    return np.nanmax(diff[ok], axis=0), np.nanmean(diff[ok], axis=0)


def onnx_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class _Trace:
    """What the replayed controller did, per step record of the node (and what the bag says it did)."""

    seq: np.ndarray  # (steps,) the node's sequence number of each step record
    t: np.ndarray  # (steps,) seconds since the first step
    recorded: np.ndarray  # (steps, 12) recorded joint_command positions by contract joint (NaN: not in the bag)
    replayed: np.ndarray  # (steps, 12) replayed (NaN: the replay published nothing)
    walk_rows: list[int] = field(default_factory=list)  # steps the node took in walk mode (per its events)
    obs: list[np.ndarray | None] = field(default_factory=list)  # replayed observation per walk step
    actions: list[np.ndarray | None] = field(default_factory=list)  # replayed raw action per walk step
    recorded_logs: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, level, message)
    emitted: list[tuple[int, str, str]] = field(default_factory=list)  # the replayed controller's
    candidates: list[tuple[int, int, str, float]] = field(default_factory=list)  # (seq, step, what, error)
    missing: int = 0
    unmatched: int = 0
    cut: bool = False  # the node's last records lie past the recording's end (_recorded_points)


#: At most this many step records may lie past the recording's end (see :func:`_recorded_points`).
MAX_STEPS_PAST_THE_CUT = 10


def _recorded_points(rec: Recording, notes: list[str]) -> list[SyncPoint]:
    """The node's records whose inputs the recording reached.

    A recording stopped while the node ran can hold the node's last step records without the state
    message they used: the two come from different writers, and the recorder's cut fell between
    them (seen in a CI run of the main job). Records past every recorded message of an input are
    left out with a note; more than MAX_STEPS_PAST_THE_CUT such steps are a lost tail, not a cut,
    and the replay names the lost message as it does for one lost mid-way."""
    newest = {k: max((m.stamp_ns for m in rec.inputs[k]), default=None) for k in InputSchedule.STATE_KINDS}
    for i, point in enumerate(rec.points):
        past = [
            k for k in InputSchedule.STATE_KINDS
            if newest[k] is not None and len(entry := point.view.get(k, [])) > 1 and int(entry[1]) > newest[k]
        ]  # fmt: skip
        if past:
            tail = rec.points[i:]
            n_steps = sum(p.kind == "step" for p in tail)
            if n_steps > MAX_STEPS_PAST_THE_CUT:
                return rec.points
            notes.append(
                f"the recording ended before the {', '.join(past)} of the node's last {len(tail)} record(s) "
                f"({n_steps} step(s)) arrived: not compared"
            )
            return rec.points[:i]
    return rec.points


def _rerun(rec: Recording, loaded: LoadedPolicy, config: ControllerConfig, notes: list[str]) -> _Trace:
    """Run the node's life again: inputs, steps and service calls, in the node's order."""
    points = _recorded_points(rec, notes)
    steps = [p for p in points if p.kind == "step"]
    cut = len(points) < len(rec.points)
    joints = contract.ISAAC_JOINT_ORDER
    n = len(steps)
    trace = _Trace(
        np.array([p.seq for p in steps], dtype=np.int64),
        np.array([(p.t_ns - steps[0].t_ns) * 1e-9 for p in steps]),
        np.full((n, len(joints)), np.nan),
        np.full((n, len(joints)), np.nan),
        cut=cut,
    )
    current = [0]  # the seq being replayed, to place the controller's messages
    controller = PolicyController(
        loaded.spec, loaded.model, config, lambda level, text: trace.emitted.append((current[0], level, text))
    )
    schedule = InputSchedule(rec)
    by_stamp: dict[int, list[RecordedCommand]] = {}
    for cmd in rec.commands:  # the node stamps each command with its step's clock time
        by_stamp.setdefault(cmd.stamp_ns, []).append(cmd)
    recorded_mode = Mode.IDLE.value
    k = -1
    for point in points:
        current[0] = point.seq
        for d in schedule.due(point):
            _deliver(controller, d.kind, d.message, d.recv_ns * 1e-9)
        t = point.t_ns * 1e-9
        event = point.event or {}
        if point.kind == "step":
            k += 1
            command = controller.step(t)
            queue = by_stamp.get(point.t_ns)
            recorded = queue.pop(0) if queue else None
            if recorded is None:
                trace.unmatched += 1
            else:
                trace.recorded[k] = _in_order(recorded.names, recorded.positions, joints)
            if command is None:
                trace.missing += 1
                what = f"the replay published nothing (controller {controller.mode.value})"
                trace.candidates.append((point.seq, k, what, np.inf))
            else:
                trace.replayed[k] = _in_order(command.names, command.positions, joints)
                if recorded is not None and tuple(recorded.names) != tuple(command.names):
                    what = f"joint names {list(command.names)} != recorded {list(recorded.names)}"
                    trace.candidates.append((point.seq, k, what, np.inf))
            if recorded_mode == Mode.WALK.value:
                walked = command is not None and controller.mode is Mode.WALK
                trace.walk_rows.append(k)
                trace.obs.append(controller.last_observation.copy() if walked else None)
                trace.actions.append(controller.last_action.copy() if walked else None)
        elif point.kind == "request":
            try:
                mode = Mode(event["requested"])
            except (KeyError, ValueError):
                raise ReplayError(f"{rec.bag}: event {point.seq} requests an unknown mode: {event}") from None
            accepted, message = controller.request(mode, t)
            if accepted != bool(event.get("accepted")):
                node_said = "accepted" if event.get("accepted") else "refused"
                what = f"~/{mode.value} was {node_said} by the node, not in replay ({message})"
                trace.candidates.append((point.seq, max(k, 0), what, np.inf))
        elif point.kind == "reset":
            controller.reset()
        elif point.kind == "bad_input":  # a message the node could not read (not in the bag's inputs)
            controller.bad_input(str(event.get("input")), str(event.get("reason")), t)
        elif point.kind == "log":
            level = str(event.get("level"))
            trace.recorded_logs.append((point.seq, level, str(event.get("message"))))
            if level == "error" and controller.mode is not Mode.FAULT:
                # A fault the node found in a step or in its watchdog timer: run that check now.
                if event.get("op") == "step":
                    controller.step(t)
                elif event.get("op") == "check":
                    controller.check_watchdogs(t)
        else:
            notes.append(f"event {point.seq}: unknown kind {point.kind!r}, ignored")
        if point.kind != "step":
            recorded_mode = str(event.get("mode", recorded_mode))
    notes += schedule.notes
    if schedule.superseded:
        notes.append(f"{schedule.superseded} cmd_vel message(s) were replaced by a newer one before any step used them")
    if trace.unmatched:
        notes.append(f"{trace.unmatched} step record(s) have no joint_command in the bag (not compared)")
    return trace


def replay(rec: Recording, loaded: LoadedPolicy, tolerance: float = DEFAULT_TOLERANCE) -> ReplayReport:
    """Re-run ``rec`` through a fresh controller with ``loaded``'s model; compare with the recording."""
    spec = loaded.spec
    notes = list(rec.notes)
    start = rec.start or {}
    config = ControllerConfig(**start["config"]) if "config" in start else ControllerConfig()
    same = "onnx_sha256" not in start or start["onnx_sha256"] == onnx_sha256(spec.onnx_path)
    trace = _rerun(rec, loaded, config, notes)
    candidates = trace.candidates

    # The controller's messages (mode entries, faults, cmd_vel timeouts), one by one.
    mismatches: list[str] = []
    for i in range(max(len(trace.recorded_logs), len(trace.emitted))):
        a = trace.recorded_logs[i] if i < len(trace.recorded_logs) else None
        b = trace.emitted[i] if i < len(trace.emitted) else None
        if a is not None and b is not None and a[1:] == b[1:]:
            continue
        text = f"controller message {i + 1}: recorded {a[1:] if a else None}, replayed {b[1:] if b else None}"
        mismatches.append(text)
        seq = min(x[0] for x in (a, b) if x is not None)
        candidates.append((seq, _step_at(trace.seq, seq), text, np.inf))

    # Joint targets.
    joints = list(contract.ISAAC_JOINT_ORDER)
    labels = [f"joint_command {j}" for j in joints]
    _first_over(list(range(len(trace.seq))), trace.recorded, trace.replayed, tolerance, trace.seq, candidates, labels)
    command_max, command_mean = _errors(trace.recorded, trace.replayed)

    # Observations (per term) and raw actions of the walk steps.
    obs_terms = [t.name for t in spec.obs_terms]
    obs_max, obs_mean = np.full(len(obs_terms), np.nan), np.full(len(obs_terms), np.nan)
    # Cut at the end: the recorded walk steps start with the replayed ones (the recording began before
    # the node's first stand or walk), so the ones past the cut are those after them.
    observations, actions = rec.observations, rec.actions
    if trace.cut:
        observations, actions = observations[: len(trace.walk_rows)], actions[: len(trace.walk_rows)]
    rows, rec_obs, rep_obs = _pair(trace.walk_rows, observations, trace.obs, spec.obs_dim, "observation", notes)
    if rows and _same_layout(start, spec, notes):
        for i, term in enumerate(spec.obs_terms):
            mx, mean = _errors(rec_obs[:, term.start : term.stop], rep_obs[:, term.start : term.stop])
            obs_max[i], obs_mean[i] = np.max(mx), np.mean(mean)
        _first_over(rows, rec_obs, rep_obs, tolerance, trace.seq, candidates, _obs_labels(spec))
    action_joints = list(spec.action.joint_names)
    action_max, action_mean = np.full(len(action_joints), np.nan), np.full(len(action_joints), np.nan)
    rows, rec_act, rep_act = _pair(trace.walk_rows, actions, trace.actions, spec.action_dim, "action", notes)
    if rows:
        action_max, action_mean = _errors(rec_act, rep_act)
        _first_over(
            rows, rec_act, rep_act, tolerance, trace.seq, candidates, [f"raw action {j}" for j in action_joints]
        )

    first = None
    if candidates:
        seq, k, what, error = min(candidates, key=lambda c: (c[0], c[1]))
        first = Divergence(k, seq, float(trace.t[k]) if len(trace.t) else 0.0, what, error)
    return ReplayReport(
        bag=str(rec.bag),
        policy=str(spec.run_dir),
        recorded_policy=start.get("policy"),
        mode="regression" if same else "comparison",
        tolerance=tolerance,
        steps=len(trace.seq),
        walk_steps=len(trace.walk_rows),
        joints=joints,
        command_max=command_max,
        command_mean=command_mean,
        action_joints=action_joints,
        action_max=action_max,
        action_mean=action_mean,
        obs_terms=obs_terms,
        obs_max=obs_max,
        obs_mean=obs_mean,
        missing_commands=trace.missing,
        event_mismatches=mismatches,
        first_divergence=first,
        t=trace.t,
        recorded=trace.recorded,
        replayed=trace.replayed,
        notes=notes,
    )


def _in_order(names: Sequence[str], positions: np.ndarray, joints: list[str]) -> np.ndarray:
    """Positions by contract joint name (any naming convention), NaN where a joint is absent."""
    out = np.full(len(joints), np.nan)
    where = {contract.canonical_joint_name(n): i for i, n in enumerate(names)}
    for j, joint in enumerate(joints):
        i = where.get(joint)
        if i is not None and i < len(positions):
            out[j] = positions[i]
    return out


def _step_at(step_seq: np.ndarray, seq: int) -> int:
    """The index of the last step record at or before ``seq`` (0 before the first)."""
    return max(0, int(np.searchsorted(step_seq, seq, side="right")) - 1)


def _pair(
    rows: list[int],
    recorded: list[np.ndarray],
    replayed: list[np.ndarray | None],
    size: int,
    what: str,
    notes: list[str],
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(step indices, recorded, replayed) of the walk steps; the recording aligned at its end if short.

    Replayed rows are NaN where the replay did not walk; nothing is paired when sizes differ.
    """
    empty = ([], np.zeros((0, size)), np.zeros((0, size)))
    if not recorded:
        if rows:
            notes.append(f"the bag has no {what} messages: {what}s not compared")
        return empty
    if any(r.size != size for r in recorded):
        notes.append(f"recorded {what}s do not have {size} values like this policy's: not compared")
        return empty
    n = min(len(rows), len(recorded))
    if len(recorded) != len(rows):
        notes.append(f"{len(recorded)} recorded {what}s for {len(rows)} walk steps: the last {n} compared")
    mine = [np.full(size, np.nan) if r is None else r for r in replayed[len(rows) - n :]]
    return rows[len(rows) - n :], np.array(recorded[len(recorded) - n :]), np.array(mine).reshape(n, size)


def _same_layout(start: dict[str, Any], spec: Any, notes: list[str]) -> bool:
    recorded = start.get("obs_terms")
    mine = [[t.name, t.func, t.start, t.stop] for t in spec.obs_terms]
    if recorded is not None and recorded != mine:
        notes.append("the recorded observation layout differs from this policy's: observations not compared")
        return False
    return True


def _obs_labels(spec: Any) -> list[str]:
    labels = [""] * spec.obs_dim
    for term in spec.obs_terms:
        for i in range(term.start, term.stop):
            labels[i] = f"observation {term.name}[{i - term.start}]"
    return labels


def _first_over(
    rows: list[int],
    rec: np.ndarray,
    rep: np.ndarray,
    tolerance: float,
    step_seq: np.ndarray,
    candidates: list[tuple[int, int, str, float]],
    labels: list[str],
) -> None:
    """Add the first element (by step) that differs by more than ``tolerance`` to ``candidates``."""
    diff = np.abs(rep.astype(np.float64) - rec.astype(np.float64))
    over = np.nonzero(diff > tolerance)  # NaN (nothing to compare) is never over
    if len(over[0]):
        row, col = int(over[0][0]), int(over[1][0])
        k = rows[row]
        text = f"{labels[col]}: recorded {rec[row, col]:.9g}, replayed {rep[row, col]:.9g}"
        candidates.append((int(step_seq[k]), k, text, float(diff[row, col])))


# --- output -----------------------------------------------------------------------------------


def format_report(report: ReplayReport) -> str:
    head = f"replay: {report.bag}: {report.steps} steps ({report.walk_steps} walking) with {report.policy}\n" + (
        f"comparison: recorded with {report.recorded_policy} (another ONNX file); no pass/fail\n"
        if report.mode == "comparison"
        else "regression check: the recorded policy\n"
    )
    lines = [head.rstrip("\n")]

    def table(title: str, names: list[str], mx: np.ndarray, mean: np.ndarray) -> None:
        lines.append(f"{title:<28} {'max':>11} {'mean':>11}")
        for name, a, b in zip(names, mx, mean, strict=True):
            lines.append(f"  {name:<26} {a:>11.3e} {b:>11.3e}")

    table("joint_command error (rad)", report.joints, report.command_max, report.command_mean)
    table("observation error per term", report.obs_terms, report.obs_max, report.obs_mean)
    table("raw action error per joint", report.action_joints, report.action_max, report.action_mean)
    if report.missing_commands:
        lines.append(f"steps where the replay published nothing: {report.missing_commands}")
    lines += [f"mismatch: {m}" for m in report.event_mismatches[:5]]
    lines += [f"note: {n}" for n in report.notes]
    d = report.first_divergence
    lines.append(
        "first divergence: none"
        if d is None
        else f"first divergence: step {d.step} (t = {d.t_s:.3f} s, record {d.seq}): {d.what}"
        + ("" if not np.isfinite(d.error) else f" (error {d.error:.3e})")
    )
    if report.passed is None:
        lines.append("COMPARED (two policies; no verdict)")
    else:
        lines.append(f"{'PASSED' if report.passed else 'FAILED'} (tolerance {report.tolerance:g})")
    return "\n".join(lines)


def write_plot(report: ReplayReport, path: Path) -> None:
    """Recorded vs replayed joint targets, one panel per joint (rows hx/hy/kn, columns legs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 4, figsize=(16, 9), sharex=True)
    replayed_label = "replayed" if report.mode == "regression" else f"replayed ({Path(report.policy).name})"
    for j, joint in enumerate(report.joints):
        leg, part = joint.split("_")
        ax = axes[contract.LEG_JOINTS.index(part)][contract.LEGS.index(leg)]
        ax.plot(report.t, report.recorded[:, j], lw=1.6, label="recorded")
        ax.plot(report.t, report.replayed[:, j], lw=1.0, ls="--", label=replayed_label)
        ax.set_title(f"{joint}: max err {report.command_max[j]:.2e} rad", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("time since first step (s)")
    for row in axes:
        row[0].set_ylabel("target (rad)")
    axes[0][0].legend(fontsize=8)
    verdict = {None: "comparison", True: "PASSED", False: "FAILED"}[report.passed]
    name = "/".join(Path(report.bag).parts[-2:])
    fig.suptitle(f"joint_command: recorded vs replayed ({verdict}) - {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_outputs(report: ReplayReport, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=2))
    write_plot(report, out / PLOT_NAME)


# --- command line -----------------------------------------------------------------------------


def recorded_policy(rec: Recording) -> LoadedPolicy:
    """The policy the recording names, checked against its recorded ONNX SHA-256.

    Tried in order: the node's ``policy`` parameter as given (a shipped name or a path), the run
    folder it resolved to, the ONNX file. ``ReplayError`` in one line when none is here unchanged.
    """
    from spot_policy.core.errors import PolicyLoadError
    from spot_policy.core.loader import load_policy

    start = rec.start
    if start is None or "onnx_sha256" not in start:
        raise ReplayError(f"{rec.bag}: the recording does not name its policy (no 'start' event); fix: --policy PATH")
    want = str(start["onnx_sha256"])
    tried: list[str] = []
    for candidate in dict.fromkeys(str(start.get(k) or "") for k in ("policy_arg", "policy", "onnx")):
        if not candidate or (candidate == "latest" and not start.get("logs_root")):
            continue
        try:
            loaded = load_policy(
                candidate,
                providers=["cpu"],
                intra_op_threads=1,
                logs_root=start.get("logs_root") or None,
                policies_dir=paths.config_dir() / "policies",
                log=lambda _m: None,
            )
        except PolicyLoadError as exc:
            tried.append(f"{candidate}: {str(exc).split(';')[0]}")
            continue
        have = onnx_sha256(loaded.spec.onnx_path)
        if have == want:
            return loaded
        tried.append(f"{candidate}: its ONNX differs (SHA-256 {have[:12]}, recorded {want[:12]})")
    raise ReplayError(
        f"{rec.bag}: the recorded policy is not here unchanged ({'; '.join(tried) or 'no path recorded'}); "
        f"fix: --policy PATH to the run folder or policy.onnx it was recorded with (SHA-256 {want[:12]}...)"
    )


def main(args: argparse.Namespace) -> int:
    """0: matched (or a comparison of two policies); 1: diverged beyond the tolerance; 2: bad input."""
    from spot_policy.core.loader import load_policy

    try:
        rec = read_recording(args.bag)
        if args.policy is None:
            loaded = recorded_policy(rec)
            print(f"policy: {loaded.spec.run_dir} (as recorded, ONNX SHA-256 matches)")
        else:
            loaded = load_policy(
                args.policy,
                providers=["cpu"],
                intra_op_threads=1,
                policies_dir=paths.config_dir() / "policies",
                log=print,
            )
        report = replay(rec, loaded, args.tolerance)
    except ReplayError as exc:
        print(f"spot-policy replay: error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.out is not None:
        write_outputs(report, args.out)
        print(f"wrote {args.out / REPORT_NAME} and {args.out / PLOT_NAME}")
    return 1 if report.passed is False else 0
