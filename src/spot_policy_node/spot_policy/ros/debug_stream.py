"""The policy node's internal stream (``publish_debug``): the format shared by the node and replay.

Recording the contract topics is not enough to re-run a node exactly: which inputs a step saw,
and when a mode switch happened between them, depends on DDS delivery order, which a recorder in
another process does not see. So the node says it, per step and per event:

- ``~/observation`` (std_msgs/Float32MultiArray, one dim ``obs``): the observation of a walk step;
  term slices are in the ``start`` event.
- ``~/action`` (std_msgs/Float32MultiArray, one dim ``action``): the raw policy output of that
  step (after ``clip_actions``), in the action's joint order (also in the ``start`` event).
- ``~/step`` (std_msgs/Int64MultiArray, fields :data:`STEP_FIELDS`): one per published
  joint_command: a sequence number shared with the events, the step's clock time and the
  *input view*: per input, how many messages the node had received, the header stamp of the
  newest and the node's clock when it arrived; cmd_vel has no header: its count, arrival and the
  values of the newest (float64 bit patterns), so a replay hands the controller exactly the command
  the node had, whatever the recorder received.
- ``~/events`` (std_msgs/String, JSON, reliable and transient-local, so a recorder that joins
  late still gets the ``start`` record): ``start`` (policy, ONNX hash, controller config, layouts),
  ``request`` (a ~/stand, ~/walk or ~/stop call and its answer), ``reset``, ``bad_input`` (a message
  it could not read: the input and why), and ``log`` (every
  message the controller emits: mode entries, faults, cmd_vel timeouts), each with ``seq``,
  ``t_ns`` (the clock time the controller was given), ``op`` (what the node was doing: ``input``,
  ``step``, ``check``, ``service``), ``mode`` (after it) and the input view.

With this, :mod:`spot_policy_tools.replay` puts every recorded input, step and mode switch back in the
order the node lived them. No rclpy here: the replay imports it without ROS.
"""

from __future__ import annotations

import struct
import sys
from array import array

TOPIC_OBSERVATION = "observation"
TOPIC_ACTION = "action"
TOPIC_STEP = "step"
TOPIC_EVENTS = "events"
#: Queue depth of the event publisher: transient-local history a late recorder receives.
EVENTS_DEPTH = 1000

INPUT_KINDS = ("joint_states", "imu", "odom", "cmd_vel")
STEP_FIELDS: tuple[str, ...] = (
    "seq",
    "t_ns",
    "joint_states.n",
    "joint_states.stamp_ns",
    "joint_states.recv_ns",
    "imu.n",
    "imu.stamp_ns",
    "imu.recv_ns",
    "odom.n",
    "odom.stamp_ns",
    "odom.recv_ns",
    "cmd_vel.n",
    "cmd_vel.recv_ns",
    "cmd_vel.vx",
    "cmd_vel.vy",
    "cmd_vel.wz",
)
#: The command values travel in the int64 record as their float64 bit patterns (exact, no scaling).
_AS_FLOAT64, _AS_INT64 = struct.Struct("=3d"), struct.Struct("=3q")
#: Offsets of each input's fields in :data:`STEP_FIELDS`.
JOINT_STATES, IMU, ODOM, CMD_VEL = 2, 5, 8, 11


class InputView:
    """What the node has received so far, kept in the array that ``~/step`` publishes as is."""

    def __init__(self) -> None:
        self.record = array("q", bytes(8 * len(STEP_FIELDS)))

    def state(self, offset: int, stamp_ns: int, recv_ns: int) -> None:
        """A joint_states/imu/odom message arrived (``offset``: :data:`JOINT_STATES`, ...)."""
        r = self.record
        r[offset] += 1
        r[offset + 1] = stamp_ns
        r[offset + 2] = recv_ns

    def cmd_vel(self, recv_ns: int, vx: float, vy: float, wz: float) -> None:
        r = self.record
        r[CMD_VEL] += 1
        r[CMD_VEL + 1] = recv_ns
        r[CMD_VEL + 2], r[CMD_VEL + 3], r[CMD_VEL + 4] = _AS_INT64.unpack(_AS_FLOAT64.pack(vx, vy, wz))

    def as_dict(self) -> dict[str, list[int]]:
        """The view for an event's JSON: ``{input: [n, stamp_ns, recv_ns]}`` (cmd_vel: ``[n, recv_ns, vx, vy, wz]``)."""
        r = self.record
        return {
            "joint_states": list(r[JOINT_STATES : JOINT_STATES + 3]),
            "imu": list(r[IMU : IMU + 3]),
            "odom": list(r[ODOM : ODOM + 3]),
            "cmd_vel": list(r[CMD_VEL : CMD_VEL + 5]),
        }


# The per-step messages are published as CDR bytes built here (rclpy publishes bytes as they are):
# half the cost of filling and converting a message object, on the step's path.
_ORDER = "<" if sys.byteorder == "little" else ">"
_ENCAPSULATION = b"\x00\x01\x00\x00" if _ORDER == "<" else b"\x00\x00\x00\x00"  # CDR_LE / CDR_BE


def multiarray_prefix(label: str, size: int, item_size: int) -> bytes:
    """CDR of a ``std_msgs/*MultiArray`` with one dimension ``label`` of ``size``, up to its data.

    Append ``size`` items of ``item_size`` bytes in native order (``ndarray.tobytes()``,
    ``array.tobytes()``) for the whole message. Alignment counts from after the 4-byte
    encapsulation header; 8-byte items (int64) start 8-aligned.
    """
    name = label.encode() + b"\0"
    body = struct.pack(f"{_ORDER}II", 1, len(name)) + name + b"\0" * (-len(name) % 4)
    body += struct.pack(f"{_ORDER}IIII", size, size, 0, size)  # dim size, stride; data_offset; data length
    body += b"\0" * (-len(body) % item_size)
    return _ENCAPSULATION + body


def view_from_step(values: list[int] | tuple[int, ...]) -> dict[str, list[int]]:
    """The input view of a ``~/step`` record, in the events' layout."""
    v = list(values)
    return {
        "joint_states": v[JOINT_STATES : JOINT_STATES + 3],
        "imu": v[IMU : IMU + 3],
        "odom": v[ODOM : ODOM + 3],
        "cmd_vel": v[CMD_VEL : CMD_VEL + 5],
    }


def command_of(cmd_vel_view: list[int]) -> tuple[float, float, float] | None:
    """(vx, vy, wz) the node had from a view's ``cmd_vel`` entry; None in a record of an older
    node that did not say (it recorded only the count and arrival)."""
    if len(cmd_vel_view) < 5:
        return None
    return _AS_FLOAT64.unpack(_AS_INT64.pack(*cmd_vel_view[2:5]))
