"""Spot API messages <-> the topic contract: joint names, frames, gains, command messages. No ROS.

The one place that knows how the robot's state stream and joint command stream lay out their
arrays. The stream carries no joint names (arrays only); the order is learned once, by name, from
the full robot state (``kinematic_state.joint_states[].name``: ``fl.hx`` ...), so the mapping is
by name even though the hot path indexes arrays.

Frames (REP-103): the robot reports its body velocity in the odom frame
(``velocity_of_body_in_odom``) and the body pose as ``odom_tform_body``. The contract wants the
twist in the body frame: ``v_body = R^T v_odom`` with ``R`` the body-to-odom rotation. Projected
gravity is ``R^T (0, 0, -1)``. Quaternions here are (x, y, z, w), as in the protos and ROS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from bosdyn.api import robot_command_pb2, robot_state_pb2

from spot_policy.core import contract

GRAVITY = 9.81
#: Leg joints in the Spot SDK's order, with this project's names (``fl_hx``).
SDK_ORDER: tuple[str, ...] = contract.SDK_JOINT_ORDER


def rotation_matrix(quat_xyzw: Sequence[float]) -> np.ndarray:
    """Body-to-odom rotation of a quaternion (x, y, z, w); normalized, so slightly off inputs are fine."""
    x, y, z, w = (float(v) for v in quat_xyzw)
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if n == 0.0 or not math.isfinite(n):
        raise ValueError(f"invalid orientation quaternion {tuple(quat_xyzw)}")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def body_twist(quat_xyzw: Sequence[float], lin_odom: Sequence[float], ang_odom: Sequence[float]) -> tuple:
    """(linear, angular) body-frame velocity from the odom-frame velocity and the body orientation."""
    rot_t = rotation_matrix(quat_xyzw).T
    return rot_t @ np.asarray(lin_odom, dtype=np.float64), rot_t @ np.asarray(ang_odom, dtype=np.float64)


def projected_gravity(quat_xyzw: Sequence[float]) -> np.ndarray:
    """Unit gravity (0, 0, -1) of the odom frame seen from the body (Isaac Lab's observation term)."""
    return rotation_matrix(quat_xyzw).T @ np.array([0.0, 0.0, -1.0])


def timestamp_ns(stamp) -> int:
    """A google.protobuf.Timestamp as integer nanoseconds."""
    return int(stamp.seconds) * 1_000_000_000 + int(stamp.nanos)


def set_timestamp_ns(stamp, ns: int) -> None:
    stamp.seconds, stamp.nanos = divmod(int(ns), 1_000_000_000)


class StreamLayout:
    """Where each leg joint sits in the robot's joint arrays, learned by name from the full state.

    ``names`` are the robot's joint names in array order (``fl.hx`` ..., maybe an arm after the
    legs). Raises ``ValueError`` naming the leg joints the robot did not report.
    """

    def __init__(self, names: Sequence[str]) -> None:
        canonical = [contract.canonical_joint_name(n) for n in names]
        where = {c: i for i, c in enumerate(canonical) if c is not None}
        missing = [j for j in SDK_ORDER if j not in where]
        if missing:
            raise ValueError(f"the robot reports no joint named {', '.join(contract.sdk_name(j) for j in missing)}")
        self.robot_names = tuple(names)
        self.size = len(names)
        #: Indices of the 12 leg joints (SDK order, contract names) in the robot's arrays.
        self.leg_index = np.array([where[j] for j in SDK_ORDER], dtype=np.intp)
        self.identity = bool(np.array_equal(self.leg_index, np.arange(len(SDK_ORDER))))

    @classmethod
    def from_robot_state(cls, state: robot_state_pb2.RobotState) -> StreamLayout:
        return cls([j.name for j in state.kinematic_state.joint_states])

    def legs(self, values: Sequence[float]) -> np.ndarray:
        """The 12 leg values (SDK order) of one of the stream's arrays."""
        if len(values) < self.size:
            raise ValueError(f"the state stream sent {len(values)} joint values, expected {self.size}")
        if self.identity:
            return np.array(values[: len(SDK_ORDER)], dtype=np.float64)
        return np.array(values, dtype=np.float64)[self.leg_index]


@dataclass(frozen=True)
class StateSample:
    """One state stream message in the contract's terms (SI units, REP-103 frames)."""

    acquisition_robot_ns: int  # robot clock
    joint_names: tuple[str, ...]  # contract names, SDK order
    q: np.ndarray
    dq: np.ndarray
    load: np.ndarray
    position: np.ndarray  # odom frame
    quat_xyzw: np.ndarray  # body -> odom
    lin_vel_body: np.ndarray
    ang_vel_body: np.ndarray
    lin_acc_body: np.ndarray  # proper acceleration (+9.81 z standing level), as an IMU measures it
    last_command_key: int
    last_command_received_robot_ns: int

    @property
    def projected_gravity(self) -> np.ndarray:
        return projected_gravity(self.quat_xyzw)


def _inverse_rotate(x: float, y: float, z: float, w: float, v) -> list[float]:
    """R^T v for the unit quaternion (x, y, z, w): plain floats, cheaper than numpy for one 3-vector."""
    vx, vy, vz = v.x, v.y, v.z
    # R^T v = v + 2 * q' x (q' x v + w v) with q' = -(x, y, z) (the conjugate's vector part)
    qx, qy, qz = -x, -y, -z
    tx, ty, tz = qy * vz - qz * vy + w * vx, qz * vx - qx * vz + w * vy, qx * vy - qy * vx + w * vz
    return [vx + 2.0 * (qy * tz - qz * ty), vy + 2.0 * (qz * tx - qx * tz), vz + 2.0 * (qx * ty - qy * tx)]


class _Gravity:
    """(0, 0, GRAVITY) as a message-like vector for :func:`_inverse_rotate`."""

    x, y, z = 0.0, 0.0, GRAVITY


def sample_from_stream(msg: robot_state_pb2.RobotStateStreamResponse, layout: StreamLayout) -> StateSample:
    """Convert one ``RobotStateStreamResponse`` (robot clock stamps are kept as they are).

    Runs for every state message (~333 Hz), so it works on plain floats where numpy's per-call
    overhead would dominate.
    """
    js, kin = msg.joint_states, msg.kinematic_state
    r = kin.odom_tform_body.rotation
    x, y, z, w = r.x, r.y, r.z, r.w
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if n == 0.0 or not math.isfinite(n):
        raise ValueError(f"invalid orientation quaternion {(x, y, z, w)}")
    x, y, z, w = x / n, y / n, z / n, w / n
    velocity = kin.velocity_of_body_in_odom
    lin = _inverse_rotate(x, y, z, w, velocity.linear)
    ang = _inverse_rotate(x, y, z, w, velocity.angular)
    acc = _inverse_rotate(x, y, z, w, _Gravity)  # at rest an accelerometer reads gravity's reaction
    if msg.inertial_state.packets:
        a = msg.inertial_state.packets[-1].acceleration_rt_odom_in_link_frame
        acc = [acc[0] + a.x, acc[1] + a.y, acc[2] + a.z]  # motion relative to odom + gravity's reaction
    p = kin.odom_tform_body.position
    stamp = js.acquisition_timestamp if js.HasField("acquisition_timestamp") else kin.acquisition_timestamp
    return StateSample(
        acquisition_robot_ns=timestamp_ns(stamp),
        joint_names=SDK_ORDER,
        q=layout.legs(js.position),
        dq=layout.legs(js.velocity),
        load=layout.legs(js.load) if len(js.load) else np.zeros(len(SDK_ORDER)),
        position=np.array((p.x, p.y, p.z)),
        quat_xyzw=np.array((x, y, z, w)),
        lin_vel_body=np.array(lin),
        ang_vel_body=np.array(ang),
        lin_acc_body=np.array(acc),
        last_command_key=int(msg.last_command.user_command_key),
        last_command_received_robot_ns=timestamp_ns(msg.last_command.received_timestamp),
    )


class CommandMapper:
    """joint_command (names in any convention, any order) -> 12 positions in SDK order, by name.

    Joints that are not Spot's legs are ignored (an arm is not ours to drive). Layouts are cached,
    so a steady sender costs one dict lookup per message.
    """

    def __init__(self) -> None:
        self._layout = contract.JointLayout(SDK_ORDER)
        lower, upper = zip(*(contract.joint_limits(j) for j in SDK_ORDER), strict=True)
        self.lower, self.upper = np.array(lower), np.array(upper)

    def positions(self, names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
        """Targets in SDK order, clipped to the joint limits. ``ValueError`` says why a message is unusable."""
        return np.clip(self._layout.take(names, positions), self.lower, self.upper)


@dataclass(frozen=True)
class Gains:
    """PD gains in SDK order, from the policy config (never invented by the bridge)."""

    kp: np.ndarray
    kd: np.ndarray
    default_pose: np.ndarray  # the policy's default joint positions, SDK order
    source: str

    @classmethod
    def from_policy_spec(cls, spec) -> Gains:
        """From a :class:`spot_policy.core.policy_spec.PolicySpec` (its joint order, mapped by name)."""
        order = contract.index_map(tuple(spec.joint_names), SDK_ORDER)
        return cls(
            kp=np.asarray(spec.stiffness, dtype=np.float64)[order],
            kd=np.asarray(spec.damping, dtype=np.float64)[order],
            default_pose=np.asarray(spec.default_joint_pos, dtype=np.float64)[order],
            source=str(spec.env_yaml),
        )


def joint_request(
    targets: np.ndarray,
    end_time_robot_ns: int,
    key: int,
    gains: Gains | None,
    client_name: str,
    request_time_ns: int,
    extrapolation_ns: int = 5_000_000,
) -> robot_command_pb2.JointControlStreamRequest:
    """One ``JointControlStreamRequest``: position targets, zero velocity and load, optional gains.

    ``end_time_robot_ns`` is in the robot's clock: the robot stops obeying the command after it.
    """
    req = robot_command_pb2.JointControlStreamRequest()
    set_timestamp_ns(req.header.request_timestamp, request_time_ns)
    req.header.client_name = client_name
    cmd = req.joint_command
    n = len(targets)
    cmd.position.extend(targets.tolist())
    cmd.velocity.extend([0.0] * n)
    cmd.load.extend([0.0] * n)
    if gains is not None:
        cmd.gains.k_q_p.extend(gains.kp.tolist())
        cmd.gains.k_qd_p.extend(gains.kd.tolist())
    set_timestamp_ns(cmd.end_time, end_time_robot_ns)
    cmd.extrapolation_duration.nanos = extrapolation_ns
    cmd.user_command_key = key
    return req
