"""Write rosbag2 bags (a folder: ``metadata.yaml`` + one ``.mcap``) from serialized CDR messages.

The core of the in-project recorder (issue 6), used when ``ros2 bag`` is absent: no rclpy here, so
it is unit-tested alone and the node only hands it bytes. Built on the ``rosbags`` writer with MCAP
storage. Message definitions come from the rosbags ROS 2 Humble typestore: for the standard
messages this project records (sensor_msgs, nav_msgs, geometry_msgs, diagnostic_msgs,
rosgraph_msgs, std_msgs) they are identical to Jazzy's, type hashes included.

Metadata is written in rosbag2 format version 8: its ``offered_qos_profiles`` is a YAML string,
which both Humble's and Jazzy's ``ros2 bag`` read (version 9 makes it a list, which Humble's
``ros2 bag info`` rejects). Connections are added on a topic's first message, as ``ros2 bag
record`` does, so topics that never publish do not appear. Also home of what the bag readers
(run report, video) share: the typestore and a CDR decoder that tolerates padded buffers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.interfaces import Connection, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

#: rosbag2 metadata version written: the newest whose QoS field Humble's ``ros2 bag`` can parse.
BAG_VERSION = 8
_UNSPECIFIED = QosTime(sec=0, nsec=0)  # rosbag2: 0/0 = the RMW default


class BagRecorderError(RuntimeError):
    """The bag cannot be written as asked (folder in the way, unknown type, topic retyped, closed)."""


@dataclass(frozen=True)
class TopicQos:
    """The QoS a recorded topic's publishers offer; stored so ``ros2 bag play`` re-offers it."""

    reliable: bool = True
    depth: int = 10
    transient_local: bool = False

    def to_rosbags(self) -> Qos:
        return Qos(
            history=QosHistory.KEEP_LAST,
            depth=self.depth,
            reliability=QosReliability.RELIABLE if self.reliable else QosReliability.BEST_EFFORT,
            durability=QosDurability.TRANSIENT_LOCAL if self.transient_local else QosDurability.VOLATILE,
            deadline=_UNSPECIFIED,
            lifespan=_UNSPECIFIED,
            liveliness=QosLiveliness.AUTOMATIC,
            liveliness_lease_duration=_UNSPECIFIED,
            avoid_ros_namespace_conventions=False,
        )

    @staticmethod
    def from_rosbags(qos: Qos) -> TopicQos:
        return TopicQos(
            reliable=qos.reliability == QosReliability.RELIABLE,
            depth=int(qos.depth) or 10,
            transient_local=qos.durability == QosDurability.TRANSIENT_LOCAL,
        )


RELIABLE = TopicQos(reliable=True, depth=10)
#: What ``qos_profile_sensor_data`` publishers (the bridges' joint_states, imu, odom) offer.
SENSOR_DATA = TopicQos(reliable=False, depth=5)


def default_typestore() -> Typestore:
    """The typestore the recorder and the run report share (ROS 2 Humble definitions)."""
    return get_typestore(Stores.ROS2_HUMBLE)


def deserialize_cdr(typestore: Typestore, raw: bytes | memoryview, msgtype: str) -> Any:
    """Decode one CDR message with ``typestore``, tolerating trailing bytes after the message.

    rclpy's ``serialize_message`` (rmw_fastrtps: the buffer length is the size estimate) can
    return some bytes more than the message, uninitialized; rclpy and rosbag2 ignore them,
    but rosbags' ``deserialize_cdr`` rejects more than 3. Bags written from such bytes (by tools
    or tests, not by a recorder, which stores the exact wire bytes) still decode here.
    """
    try:
        return typestore.deserialize_cdr(raw, msgtype)
    except SerdeError as exc:
        if "size mismatch" not in str(exc):
            raise
        msgdef = typestore.get_msgdef(msgtype)
        decode = msgdef.deserialize_cdr_le if raw[1] else msgdef.deserialize_cdr_be
        message, _ = decode(memoryview(raw)[4:], 0, msgdef.cls, typestore)
        return message


def check_type(msgtype: str, typestore: Typestore) -> None:
    """Raise unless ``msgtype`` (``pkg/msg/Type``) has a definition to store in the bag."""
    if msgtype not in typestore.fielddefs:
        raise BagRecorderError(
            f"message type {msgtype!r} is not in the recorder's typestore (ROS 2 Humble standard "
            "messages); fix: record a standard type, spelled pkg/msg/Type"
        )


def prepare_output(path: Path) -> None:
    """Refuse a non-empty folder (never mix runs); an empty one is replaced by the bag folder."""
    if path.is_file():
        raise BagRecorderError(f"{path}: is a file; fix: give a new folder for the bag")
    if path.is_dir():
        if any(path.iterdir()):
            raise BagRecorderError(f"{path}: folder exists and is not empty; fix: give a new folder or remove this one")
        path.rmdir()  # rosbags' Writer creates the folder itself and refuses an existing one


class BagRecorder:
    """A rosbag2/MCAP bag open for writing; ``write()`` may be called from any thread.

    Use as a context manager or call :meth:`close` exactly once: only closing writes the MCAP
    summary and ``metadata.yaml``. ``compress=True`` zstd-compresses the MCAP chunks (rosbag2's
    ``zstd_fast`` storage preset does the same): every MCAP reader decompresses them itself.
    """

    def __init__(self, path: str | Path, *, typestore: Typestore | None = None, compress: bool = False) -> None:
        self.path = Path(path)
        prepare_output(self.path)
        self._typestore = typestore or default_typestore()
        self._lock = threading.Lock()
        self._qos: dict[str, tuple[TopicQos, ...]] = {}
        self._connections: dict[str, Connection] = {}
        self._counts: dict[str, int] = {}
        self._writer: Writer | None = Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        if compress:
            self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._writer.open()

    @property
    def closed(self) -> bool:
        return self._writer is None

    @property
    def counts(self) -> dict[str, int]:
        """Messages written so far, per topic (only topics with at least one message)."""
        with self._lock:
            return dict(self._counts)

    def set_qos(self, topic: str, qos: TopicQos | Sequence[TopicQos]) -> None:
        """The offered QoS (one per publisher) to store for ``topic``; before its first message.

        Default: one reliable publisher. Later calls for a topic already in the bag are ignored.
        """
        with self._lock:
            self._qos[topic] = (qos,) if isinstance(qos, TopicQos) else tuple(qos)

    def has_topic(self, topic: str) -> bool:
        """Whether ``topic`` has been written (its connection and QoS are fixed)."""
        with self._lock:
            return topic in self._connections

    def write(self, topic: str, msgtype: str, data: bytes | memoryview, timestamp_ns: int) -> None:
        """Append one CDR-serialized message received at ``timestamp_ns`` (the recorder's clock)."""
        with self._lock:
            if self._writer is None:
                raise BagRecorderError(f"{self.path}: bag is closed; cannot write {topic}")
            connection = self._connections.get(topic)
            if connection is None:
                connection = self._add_connection(topic, msgtype)
            elif connection.msgtype != msgtype:
                raise BagRecorderError(
                    f"topic {topic} was recorded as {connection.msgtype}, now given {msgtype}; fix: one type per topic"
                )
            self._writer.write(connection, max(0, int(timestamp_ns)), bytes(data))
            self._counts[topic] += 1

    def _add_connection(self, topic: str, msgtype: str) -> Connection:
        check_type(msgtype, self._typestore)
        assert self._writer is not None
        qos = self._qos.get(topic, (RELIABLE,))
        connection = self._writer.add_connection(
            topic, msgtype, typestore=self._typestore, offered_qos_profiles=[q.to_rosbags() for q in qos]
        )
        self._connections[topic] = connection
        self._counts[topic] = 0
        return connection

    def close(self) -> dict[str, int]:
        """Finish the MCAP file and write ``metadata.yaml``; idempotent. Returns per-topic counts."""
        with self._lock:
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.close()
            return dict(self._counts)

    def __enter__(self) -> BagRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Close on errors too: what was recorded up to a failure is what one needs to debug it.
        self.close()


def copy_bag(
    src: str | Path, dst: str | Path, *, keep: Callable[[str], bool] | None = None, compress: bool = True
) -> dict[str, int]:
    """Rewrite a bag with the topics ``keep`` accepts (default: all), zstd chunks by default.

    For a recording to commit or send: drop what is not needed (diagnostics, say) and compress.
    Times, bytes and offered QoS are kept as they were. Returns the messages written per topic.
    """
    from rosbags.rosbag2 import Reader

    with Reader(Path(src)) as reader, BagRecorder(dst, compress=compress) as out:
        connections = [c for c in reader.connections if keep is None or keep(c.topic)]
        for conn in connections:
            offered = [TopicQos.from_rosbags(q) for q in conn.ext.offered_qos_profiles]
            out.set_qos(conn.topic, offered or RELIABLE)
        for conn, timestamp, raw in reader.messages(connections=connections):
            out.write(conn.topic, conn.msgtype, raw, timestamp)
        return out.counts


def recover_bag(src: str | Path, dst: str | Path) -> dict[str, int]:
    """A readable bag from one whose recorder was killed: every message up to the last whole chunk.

    A recorder that dies (SIGKILL, power loss) leaves an MCAP without its summary and footer, and no
    ``metadata.yaml``: rosbag readers refuse it. The MCAP records before the cut are intact, so
    this reads them in order up to the end of the last complete one and writes them as a new bag
    (``metadata.yaml`` included). Offered QoS is not recovered (reliable is written).
    """
    from mcap.exceptions import McapError
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    src = Path(src)
    files = sorted(src.glob("*.mcap")) if src.is_dir() else [src]
    if not files:
        raise BagRecorderError(f"{src}: no .mcap file to recover; fix: give the bag folder or its .mcap")
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    with BagRecorder(dst, compress=True) as out:
        for path in files:
            with open(path, "rb") as stream:
                try:
                    for record in StreamReader(stream, skip_magic=False, emit_chunks=False).records:
                        if isinstance(record, Schema):
                            schemas[record.id] = record.name
                        elif isinstance(record, Channel):
                            channels[record.id] = (record.topic, schemas.get(record.schema_id, ""))
                        elif isinstance(record, Message) and record.channel_id in channels:
                            topic, msgtype = channels[record.channel_id]
                            out.write(topic, msgtype, record.data, record.log_time)
                except (McapError, EOFError, ValueError):
                    pass  # the cut: everything before it is in
        return out.counts
