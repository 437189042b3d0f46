"""The few CDR layouts the control loop reads and writes, without rclpy's message conversion.

rclpy turns each received message into Python objects field by field: 60-120 µs for an
``Odometry`` or ``Imu`` on this machine, several times the policy's inference. The policy node
subscribes to its state topics raw and reads the handful of values it needs here (a few µs),
and publishes ``joint_command`` from a pre-serialized template. Plain (XCDR1) CDR in either byte
order, as ROS 2's DDS middlewares write it; anything else raises :class:`UnsupportedEncoding` and
the caller falls back to rclpy's deserializer. No ROS imports: unit-tested against rclpy's own
serializer in ``test/test_cdr.py``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Encapsulation identifier -> struct byte order (OMG DDS-XTypes: CDR_BE = 0, CDR_LE = 1).
_ORDERS = {b"\x00\x00": ">", b"\x00\x01": "<"}
#: The other encapsulations a DDS middleware may write (PL_CDR, XCDR2 plain/delimited/parameter
#: list, both byte orders): rclpy's deserializer reads them.
_OTHER_ENCODINGS = {bytes((0, k)) for k in (2, 3, 6, 7, 8, 9, 10, 11)}
_ORIGIN = 4  # alignment is counted from the end of the encapsulation header


class UnsupportedEncoding(ValueError):
    """The payload is not plain CDR (e.g. XCDR2); the caller deserializes it the slow way."""


class MalformedMessage(ValueError):
    """The payload cannot be this message: truncated, random bytes, an absurd length, bad text.

    A reader raises nothing else for bad input; the nodes count it and carry on (no input may
    kill a node).
    """


def _readers_raise_malformed(read):
    """Any failure of ``read`` on a payload becomes :class:`MalformedMessage` naming the cause."""

    def guarded(buf):
        try:
            return read(buf)
        except (UnsupportedEncoding, MalformedMessage):
            raise
        except (struct.error, ValueError, IndexError, UnicodeDecodeError, OverflowError) as exc:
            raise MalformedMessage(f"{len(buf)} bytes: {exc}") from None

    guarded.__doc__ = read.__doc__
    return guarded


def _order(buf: bytes) -> str:
    head = bytes(buf[:2])
    try:
        return _ORDERS[head]
    except KeyError:
        if head in _OTHER_ENCODINGS:
            raise UnsupportedEncoding(f"CDR encapsulation {head.hex()} is not plain CDR") from None
        raise MalformedMessage(f"encapsulation {head.hex() or 'missing'} is no CDR encoding") from None


def _align(offset: int, size: int) -> int:
    return offset + (-(offset - _ORIGIN)) % size


def _need(buf: bytes, end: int, what: str) -> None:
    if end > len(buf):
        raise MalformedMessage(f"{what} runs to byte {end}, past the end of the {len(buf)}-byte payload")


def _skip_header(buf: bytes, order: str) -> tuple[int, int]:
    """``std_msgs/Header``: returns (stamp in ns, offset after it)."""
    sec, nanosec, frame_len = struct.unpack_from(order + "iII", buf, _ORIGIN)
    end = _ORIGIN + 12 + frame_len
    _need(buf, end, "header.frame_id")
    return sec * 1_000_000_000 + nanosec, end


def _skip_string(buf: bytes, order: str, offset: int) -> int:
    offset = _align(offset, 4)
    (length,) = struct.unpack_from(order + "I", buf, offset)
    _need(buf, offset + 4 + length, "a string")
    return offset + 4 + length


def _doubles(buf: bytes, order: str, offset: int) -> tuple[np.ndarray, int]:
    """A ``float64[]``: the values (a read-only view) and the offset after them."""
    offset = _align(offset, 4)
    (count,) = struct.unpack_from(order + "I", buf, offset)
    offset = _align(offset + 4, 8) if count else offset + 4
    _need(buf, offset + 8 * count, f"a float64[{count}]")
    values = np.frombuffer(buf, dtype=order + "f8", count=count, offset=offset)
    return values, offset + 8 * count


@dataclass(frozen=True)
class JointStateView:
    stamp_ns: int
    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


class JointStateDecoder:
    """``sensor_msgs/JointState``. The name list is decoded once and reused while its bytes repeat,
    so the controller's layout check stays an identity comparison."""

    def __init__(self) -> None:
        self._names_raw = b""
        self._names: tuple[str, ...] = ()

    def __call__(self, buf: bytes) -> JointStateView:
        try:
            return self._decode(buf)
        except (UnsupportedEncoding, MalformedMessage):
            raise
        except (struct.error, ValueError, IndexError, UnicodeDecodeError, OverflowError) as exc:
            raise MalformedMessage(f"{len(buf)} bytes: {exc}") from None

    def _decode(self, buf: bytes) -> JointStateView:
        order = _order(buf)
        stamp_ns, offset = _skip_header(buf, order)
        start = _align(offset, 4)
        offset = start + len(self._names_raw)
        if not self._names_raw or buf[start:offset] != self._names_raw:  # a new name list
            self._names, offset = _strings(buf, order, start)
            self._names_raw = bytes(buf[start:offset])
        position, offset = _doubles(buf, order, offset)
        velocity, offset = _doubles(buf, order, offset)
        effort, _ = _doubles(buf, order, offset)
        return JointStateView(stamp_ns, self._names, position, velocity, effort)


def _strings(buf: bytes, order: str, offset: int) -> tuple[tuple[str, ...], int]:
    """A ``string[]`` (offset aligned to 4): the strings and the offset after them."""
    (count,) = struct.unpack_from(order + "I", buf, offset)
    offset += 4
    _need(buf, offset + 5 * count, f"a string[{count}]")  # each string: a length and at least its NUL
    out = []
    for _ in range(count):
        offset = _align(offset, 4)
        (length,) = struct.unpack_from(order + "I", buf, offset)
        if length == 0:
            raise MalformedMessage("a string without its terminating NUL")
        _need(buf, offset + 4 + length, "a string")
        out.append(bytes(buf[offset + 4 : offset + 3 + length]).decode())  # drops the NUL
        offset += 4 + length
    return tuple(out), offset


@_readers_raise_malformed
def decode_clock(buf: bytes) -> int:
    """``rosgraph_msgs/Clock``: the time in ns."""
    sec, nanosec = struct.unpack_from(_order(buf) + "iI", buf, _ORIGIN)
    return sec * 1_000_000_000 + nanosec


@_readers_raise_malformed
def decode_imu(buf: bytes) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """``sensor_msgs/Imu``: (stamp ns, orientation x y z w, angular velocity x y z)."""
    order = _order(buf)
    stamp_ns, offset = _skip_header(buf, order)
    values = struct.unpack_from(order + "4d72x3d", buf, _align(offset, 8))  # skips the 3x3 covariance
    return stamp_ns, values[:4], values[4:]


@_readers_raise_malformed
def decode_twist(buf: bytes) -> tuple[float, float, float]:
    """``geometry_msgs/Twist``: (linear.x, linear.y, angular.z), what cmd_vel carries for Spot."""
    lx, ly, _lz, _ax, _ay, az = struct.unpack_from(_order(buf) + "6d", buf, _ORIGIN)
    return lx, ly, az


@_readers_raise_malformed
def decode_odometry_twist(buf: bytes) -> tuple[int, tuple[float, ...]]:
    """``nav_msgs/Odometry``: (stamp ns, twist.twist.linear x y z in the child (body) frame)."""
    order = _order(buf)
    stamp_ns, offset = _skip_header(buf, order)
    offset = _align(_skip_string(buf, order, offset), 8)  # child_frame_id
    # pose: position (3) + orientation (4) + covariance (36) doubles, then twist.linear
    return stamp_ns, struct.unpack_from(order + "344x3d", buf, offset)


class _Template:
    """Builds a little-endian CDR byte template and records where the variable fields sit."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x00\x01\x00\x00")  # CDR little endian

    def _pad(self, size: int) -> None:
        self.out.extend(b"\x00" * ((-(len(self.out) - _ORIGIN)) % size))

    def header(self, frame_id: str) -> int:
        """``std_msgs/Header``; returns the stamp's offset."""
        self._pad(4)
        at = len(self.out)
        self.out.extend(bytes(8))
        self.string(frame_id)
        return at

    def string(self, text: str) -> None:
        data = text.encode() + b"\x00"
        self._pad(4)
        self.out.extend(struct.pack("<I", len(data)) + data)

    def strings(self, texts: Sequence[str]) -> None:
        self._pad(4)
        self.out.extend(struct.pack("<I", len(texts)))
        for text in texts:
            self.string(text)

    def doubles(self, count: int, sequence: bool = False) -> int:
        """``float64[count]`` (fixed) or a ``float64[]`` of that length; returns the values' offset."""
        if sequence:
            self._pad(4)
            self.out.extend(struct.pack("<I", count))
        if count:
            self._pad(8)
        at = len(self.out)
        self.out.extend(bytes(8 * count))
        return at

    def view(self, at: int, count: int) -> np.ndarray:
        """Writable float64 values of the finished template (it cannot grow once viewed)."""
        return np.frombuffer(self.out, dtype="<f8", count=count, offset=at)


def _stamp(template: bytearray, at: int, stamp_ns: int) -> None:
    struct.pack_into("<iI", template, at, *divmod(int(stamp_ns), 1_000_000_000))


class JointStateEncoder:
    """``sensor_msgs/JointState`` with a fixed frame and name list: a byte template in which each
    message rewrites the stamp and the values. Without velocity/effort they stay zero."""

    def __init__(self, names: Sequence[str], frame_id: str = "") -> None:
        self.names = tuple(names)
        n = len(self.names)
        t = _Template()
        self._stamp_at = t.header(frame_id)
        t.strings(self.names)
        at = [t.doubles(n, sequence=True) for _ in range(3)]
        self._position, self._velocity, self._effort = (t.view(a, n) for a in at)
        self._template = t.out

    def __call__(
        self,
        stamp_ns: int,
        positions: Sequence[float],
        velocities: Sequence[float] | None = None,
        efforts: Sequence[float] | None = None,
    ) -> bytes:
        _stamp(self._template, self._stamp_at, stamp_ns)
        self._position[:] = positions
        if velocities is not None:
            self._velocity[:] = velocities
        if efforts is not None:
            self._effort[:] = efforts
        return bytes(self._template)


class ImuEncoder:
    """``sensor_msgs/Imu``: orientation, angular velocity and linear acceleration; covariances zero."""

    def __init__(self, frame_id: str) -> None:
        t = _Template()
        self._stamp_at = t.header(frame_id)
        at = [t.doubles(n) for n in (4, 9, 3, 9, 3, 9)]  # each value, then its covariance
        self._orientation, self._angular_velocity, self._linear_acceleration = (
            t.view(at[0], 4), t.view(at[2], 3), t.view(at[4], 3),
        )  # fmt: skip
        self._template = t.out

    def __call__(
        self,
        stamp_ns: int,
        quat_xyzw: Sequence[float],
        angular_velocity: Sequence[float],
        linear_acceleration: Sequence[float],
    ) -> bytes:
        _stamp(self._template, self._stamp_at, stamp_ns)
        self._orientation[:] = quat_xyzw
        self._angular_velocity[:] = angular_velocity
        self._linear_acceleration[:] = linear_acceleration
        return bytes(self._template)


class OdometryEncoder:
    """``nav_msgs/Odometry``: pose in the header frame, twist in the child frame; covariances zero."""

    def __init__(self, frame_id: str, child_frame_id: str) -> None:
        t = _Template()
        self._stamp_at = t.header(frame_id)
        t.string(child_frame_id)
        at = [t.doubles(n) for n in (7, 36, 6, 36)]  # pose (position, x y z w), its covariance, twist, ...
        self._pose, self._twist = t.view(at[0], 7), t.view(at[2], 6)
        self._template = t.out

    def __call__(
        self,
        stamp_ns: int,
        position: Sequence[float],
        quat_xyzw: Sequence[float],
        linear: Sequence[float],
        angular: Sequence[float],
    ) -> bytes:
        _stamp(self._template, self._stamp_at, stamp_ns)
        pose, twist = self._pose, self._twist
        pose[:3], pose[3:] = position, quat_xyzw
        twist[:3], twist[3:] = linear, angular
        return bytes(self._template)


class TFMessageEncoder:
    """``tf2_msgs/TFMessage`` with a fixed list of (parent, child) frames: each message rewrites the
    stamps and every transform's translation (x, y, z) and rotation (x, y, z, w), each with one
    indexed write into the template (a TFMessage of Spot's 13 moving frames has 91 values)."""

    def __init__(self, frames: Sequence[tuple[str, str]]) -> None:
        self.frames = tuple(frames)
        t = _Template()
        t.out.extend(struct.pack("<I", len(self.frames)))
        stamps: list[int] = []
        values: list[int] = []
        for parent, child in self.frames:
            stamps.append(t.header(parent))
            t.string(child)
            values.append(t.doubles(7))
        self._template = t.out
        # Every field sits at a multiple of its size from the end of the encapsulation header.
        words = (len(self._template) - _ORIGIN) // 4
        self._words = np.frombuffer(self._template, dtype="<u4", count=words, offset=_ORIGIN)
        self._doubles = np.frombuffer(self._template, dtype="<f8", count=words // 2, offset=_ORIGIN)
        self._sec_at = np.array([(at - _ORIGIN) // 4 for at in stamps], dtype=np.intp)
        self._value_at = np.array([(at - _ORIGIN) // 8 + k for at in values for k in range(7)], dtype=np.intp)
        self._values = np.empty((len(self.frames), 7))

    def __call__(self, stamp_ns: int, translations: np.ndarray, rotations: np.ndarray) -> bytes:
        """``translations`` (n, 3) and ``rotations`` (n, 4: x, y, z, w), one row per frame pair."""
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        self._words[self._sec_at] = sec & 0xFFFFFFFF  # int32 seconds, two's complement
        self._words[self._sec_at + 1] = nanosec
        values = self._values
        values[:, :3] = translations
        values[:, 3:] = rotations
        self._doubles[self._value_at] = values.ravel()
        return bytes(self._template)


def encode_clock(stamp_ns: int) -> bytes:
    """``rosgraph_msgs/Clock``."""
    return b"\x00\x01\x00\x00" + struct.pack("<iI", *divmod(int(stamp_ns), 1_000_000_000))
