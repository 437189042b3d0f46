"""The Spot API services of the emulator, as servicers of the stubs in ``bosdyn-api``.

Served: auth, robot id, directory, time sync, E-Stop, lease, power, robot state (+ its stream),
robot command (stand, sit, safe power-off, joint-control activation) and its joint-control stream,
licence. Each answers the way the SDK client expects (response header echoing the request header,
robot-clock timestamps, lease use results), so bosdyn-client runs against it unmodified.
Faults come from :class:`spot_hw_bridge.emulator.server.Faults` at every call.

Where the SDK documents no behaviour, the emulator chose one, and says so here: without a
joint-control licence, the RobotCommand ``joint_request`` is answered ``STATUS_UNSUPPORTED`` and a
joint control stream ``STATUS_INACTIVE``, both with a message naming the licence; when joint control
ends on the robot's side (E-Stop, lease taken, superseded, commands expired), open streams are
answered at their next message with ``STATUS_INACTIVE`` / ``STATUS_EXPIRED`` and a message saying why;
a lease nobody used for 3 s is stale and can be acquired by another client.
"""

from __future__ import annotations

import ctypes
import functools
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import numpy as np
from bosdyn.api import (
    auth_pb2,
    auth_service_pb2_grpc,
    basic_command_pb2,
    directory_pb2,
    directory_service_pb2_grpc,
    estop_pb2,
    estop_service_pb2_grpc,
    header_pb2,
    lease_pb2,
    lease_service_pb2_grpc,
    license_pb2,
    license_service_pb2_grpc,
    power_pb2,
    power_service_pb2_grpc,
    robot_command_pb2,
    robot_command_service_pb2_grpc,
    robot_id_pb2,
    robot_id_service_pb2_grpc,
    robot_state_pb2,
    robot_state_service_pb2_grpc,
    time_sync_pb2,
    time_sync_service_pb2_grpc,
)
from bosdyn.api.spot import robot_command_pb2 as spot_command_pb2
from bosdyn.client.lease import Lease, test_active_lease

from spot_hw_bridge.emulator.body import SDK, SDK_FROM_ISAAC, Behaviour, RobotBody, Snapshot
from spot_hw_bridge.emulator.posture import BodyOffset

if TYPE_CHECKING:
    from spot_hw_bridge.emulator.server import SpotEmulator

#: (service name, service type) the directory lists; the authority is ``<name>.spot.robot``
#: except the bootstrap services, whose authorities bosdyn-client hard-codes.
SERVICES: tuple[tuple[str, str], ...] = (
    ("auth", "bosdyn.api.AuthService"),
    ("directory", "bosdyn.api.DirectoryService"),
    ("robot-id", "bosdyn.api.RobotIdService"),
    ("time-sync", "bosdyn.api.TimeSyncService"),
    ("estop", "bosdyn.api.EstopService"),
    ("lease", "bosdyn.api.LeaseService"),
    ("power", "bosdyn.api.PowerService"),
    ("robot-state", "bosdyn.api.RobotStateService"),
    ("robot-state-streaming", "bosdyn.api.RobotStateStreamingService"),
    ("robot-command", "bosdyn.api.RobotCommandService"),
    ("robot-command-streaming", "bosdyn.api.RobotCommandStreamingService"),
    ("license", "bosdyn.api.LicenseService"),
)
BOOTSTRAP_AUTHORITIES = {"auth": "auth.spot.robot", "directory": "api.spot.robot", "robot-id": "id.spot.robot"}
#: Methods callable without a user token (how a client logs in and learns what it talks to).
OPEN_METHODS = ("/bosdyn.api.AuthService/", "/bosdyn.api.RobotIdService/")
JOINT_FEATURE = "joint_control"
LEASE_RESOURCE = "body"
LEASE_STALE_S = 3.0  # a lease nobody used for this long can be acquired by another client
#: A state stream reader further behind than this skips ahead (the samples in between are not sent).
MAX_STREAM_BACKLOG_S = 0.25
_CONTACT = {True: robot_state_pb2.FootState.CONTACT_MADE, False: robot_state_pb2.FootState.CONTACT_LOST}


def authority(name: str) -> str:
    return BOOTSTRAP_AUTHORITIES.get(name, f"{name}.spot.robot")


def set_ns(stamp, ns: int) -> None:
    stamp.seconds, stamp.nanos = divmod(int(ns), 1_000_000_000)


def stamp_ns(stamp) -> int:
    return int(stamp.seconds) * 1_000_000_000 + int(stamp.nanos)


class Services:
    """All servicers, sharing the emulator (clock, faults, body) and the robot's bookkeeping."""

    def __init__(self, emulator: SpotEmulator) -> None:
        self.emu = emulator
        self.body: RobotBody = emulator.body
        self.lock = threading.RLock()
        self.tokens: set[str] = set()
        # lease
        self.lease_epoch = secrets.token_hex(8)
        self.lease_counter = 0
        self.lease: Lease | None = None
        self.lease_owner = ""
        self.lease_last_use = 0.0
        # E-Stop
        self.estop_config_id = "1"
        self.estop_endpoints: dict[str, dict] = {}  # unique_id -> {proto, challenge, level, last_ok}
        self._estop_next = 1
        self.estop_cut = False  # power was cut by the E-Stop system (needs a new power-on)
        # power
        self.power_commands: dict[int, str] = {}
        self._power_next = 1
        # time sync
        self.clock_id = "emulator-clock-" + secrets.token_hex(4)
        self.time_sync_samples: dict[str, list[tuple[float, float]]] = {}
        # streams
        self.stream_end: tuple[str, str] | None = None
        self.stream_epoch = 0
        self.open_streams = 0
        self.body.on_joint_end = self.end_joint_streams

    # ------------------------------------------------------------------ helpers
    def now(self) -> int:
        return self.emu.robot_now_ns()

    def header(self, response, request, received_ns: int):
        """The common response header: the request's header echoed (never the request: it may hold
        a password), receive and response times, no error."""
        response.header.request_header.CopyFrom(request.header)
        set_ns(response.header.request_received_timestamp, received_ns)
        set_ns(response.header.response_timestamp, self.now())
        response.header.error.code = header_pb2.CommonError.CODE_OK
        return response

    def end_joint_streams(self, status: str, message: str) -> None:
        """Open JointControlStream calls answer ``status`` at their next message (the robot ended them)."""
        with self.lock:
            self.stream_end = (status, message)
            self.stream_epoch += 1
        self.body.note(f"joint streams ended: {message}")

    def lease_check(self, lease_proto) -> lease_pb2.LeaseUseResult:
        """The lease use result of a request's lease against the active lease (updates the active one)."""
        with self.lock:
            if self.lease is None:
                result = lease_pb2.LeaseUseResult(status=lease_pb2.LeaseUseResult.STATUS_REVOKED)
                result.attempted_lease.CopyFrom(lease_proto)
                return result
            result, incoming = test_active_lease(lease_proto, self.lease)
            if result.status == lease_pb2.LeaseUseResult.STATUS_OK and incoming is not None:
                if incoming.compare(self.lease) in (Lease.CompareResult.NEWER, Lease.CompareResult.SUB_LEASE):
                    self.lease = incoming
                self.lease_last_use = time.monotonic()
            result.owner.client_name = self.lease_owner
            return result

    def estop_level(self) -> int:
        """The system stop level: the most severe endpoint's (a silent one counts as CUT), or CUT with none."""
        with self.lock:
            if self.emu.faults.estop:
                return estop_pb2.ESTOP_LEVEL_CUT
            levels = [self._endpoint_level(e) for e in self.estop_endpoints.values()]
            if self.emu.external_estop:
                levels.append(estop_pb2.ESTOP_LEVEL_NONE)
            return min(levels) if levels else estop_pb2.ESTOP_LEVEL_CUT

    def _endpoint_level(self, entry: dict) -> int:
        timeout = entry["proto"].timeout.seconds + entry["proto"].timeout.nanos * 1e-9
        if entry["last_ok"] is None or time.monotonic() - entry["last_ok"] > timeout:
            return estop_pb2.ESTOP_LEVEL_CUT
        return entry["level"]

    def estop_tick(self) -> None:
        """Cut motor power when the E-Stop system stops (called by the emulator's housekeeping)."""
        if self.estop_level() != estop_pb2.ESTOP_LEVEL_NONE and self.body.behaviour is not Behaviour.OFF:
            self.body.cut_power("E-Stop")
            self.estop_cut = True

    # ------------------------------------------------------------------ servicers
    def register(self, server: grpc.Server) -> None:
        auth_service_pb2_grpc.add_AuthServiceServicer_to_server(_Auth(self), server)
        robot_id_service_pb2_grpc.add_RobotIdServiceServicer_to_server(_RobotId(self), server)
        directory_service_pb2_grpc.add_DirectoryServiceServicer_to_server(_Directory(self), server)
        time_sync_service_pb2_grpc.add_TimeSyncServiceServicer_to_server(_TimeSync(self), server)
        estop_service_pb2_grpc.add_EstopServiceServicer_to_server(_Estop(self), server)
        lease_service_pb2_grpc.add_LeaseServiceServicer_to_server(_Lease(self), server)
        power_service_pb2_grpc.add_PowerServiceServicer_to_server(_Power(self), server)
        robot_state_service_pb2_grpc.add_RobotStateServiceServicer_to_server(_RobotState(self), server)
        robot_state_service_pb2_grpc.add_RobotStateStreamingServiceServicer_to_server(_StateStream(self), server)
        robot_command_service_pb2_grpc.add_RobotCommandServiceServicer_to_server(_RobotCommand(self), server)
        robot_command_service_pb2_grpc.add_RobotCommandStreamingServiceServicer_to_server(_CommandStream(self), server)
        license_service_pb2_grpc.add_LicenseServiceServicer_to_server(_License(self), server)


class _Part:
    """A servicer of the emulator: its state is the shared :class:`Services`."""

    def __init__(self, s: Services) -> None:
        self.s = s


def unary(response_type: type) -> Callable:
    """A unary RPC whose body fills a fresh ``response_type``; the header is the common one.

    The receive time is in the response header before the body runs (time sync reads it).
    """

    def wrap(body: Callable) -> Callable:
        @functools.wraps(body)
        def method(self: _Part, request, context):
            received = self.s.now()
            response = response_type()
            set_ns(response.header.request_received_timestamp, received)
            body(self, request, response)
            return self.s.header(response, request, received)

        return method

    return wrap


class _Auth(_Part, auth_service_pb2_grpc.AuthServiceServicer):
    @unary(auth_pb2.GetAuthTokenResponse)
    def GetAuthToken(self, request, response):
        if request.token:
            ok = request.token in self.s.tokens
            response.status = (
                auth_pb2.GetAuthTokenResponse.STATUS_OK if ok else auth_pb2.GetAuthTokenResponse.STATUS_INVALID_TOKEN
            )
        elif self.s.emu.check_login(request.username, request.password):
            response.status = auth_pb2.GetAuthTokenResponse.STATUS_OK
        else:
            response.status = auth_pb2.GetAuthTokenResponse.STATUS_INVALID_LOGIN
            self.s.body.note("login rejected")
        if response.status == auth_pb2.GetAuthTokenResponse.STATUS_OK:
            token = secrets.token_hex(24)
            with self.s.lock:
                self.s.tokens.add(token)
            response.token = token


class _RobotId(_Part, robot_id_service_pb2_grpc.RobotIdServiceServicer):
    @unary(robot_id_pb2.RobotIdResponse)
    def GetRobotId(self, request, response):
        rid = response.robot_id
        rid.serial_number, rid.species, rid.version, rid.nickname = "EMU-0001", "spot", "V3", "spot-emulator"
        rid.computer_serial_number = "EMU-0001-CPU"
        version = rid.software_release.version
        version.major_version, version.minor_version, version.patch_level = 5, 2, 0
        rid.software_release.name = "spot_policy Spot API emulator"


class _Directory(_Part, directory_service_pb2_grpc.DirectoryServiceServicer):
    @staticmethod
    def _entry(entry, name: str, kind: str) -> None:
        entry.name, entry.type, entry.authority = name, kind, authority(name)
        entry.user_token_required = name not in ("auth", "robot-id")

    @unary(directory_pb2.ListServiceEntriesResponse)
    def ListServiceEntries(self, request, response):
        for name, kind in SERVICES:
            self._entry(response.service_entries.add(), name, kind)

    @unary(directory_pb2.GetServiceEntryResponse)
    def GetServiceEntry(self, request, response):
        kinds = dict(SERVICES)
        if request.service_name in kinds:
            response.status = directory_pb2.GetServiceEntryResponse.STATUS_OK
            self._entry(response.service_entry, request.service_name, kinds[request.service_name])
        else:
            response.status = directory_pb2.GetServiceEntryResponse.STATUS_NONEXISTENT_SERVICE


class _TimeSync(_Part, time_sync_service_pb2_grpc.TimeSyncServiceServicer):
    """NTP-style: the client sends its previous round trip; three samples give an estimate."""

    SAMPLES = 3

    @unary(time_sync_pb2.TimeSyncUpdateResponse)
    def TimeSyncUpdate(self, request, response):
        response.clock_identifier = self.s.clock_id
        if self.s.emu.faults.no_time_sync:
            response.state.status = time_sync_pb2.TimeSyncState.STATUS_SERVICE_NOT_READY
            return
        client = request.clock_identifier or ""
        samples = self.s.time_sync_samples.setdefault(client, [])
        rt = request.previous_round_trip
        if request.HasField("previous_round_trip") and request.clock_identifier == self.s.clock_id:
            tx, rx = stamp_ns(rt.client_tx), stamp_ns(rt.client_rx)
            srx, stx = stamp_ns(rt.server_rx), stamp_ns(rt.server_tx)
            rtt = (rx - tx) - (stx - srx)
            skew = ((srx - tx) + (stx - rx)) / 2.0
            samples.append((rtt, skew))
            del samples[:-50]
        if len(samples) >= self.SAMPLES:
            rtt, skew = min(samples)  # the fastest round trip is the least disturbed
            estimate = response.state.best_estimate
            estimate.round_trip_time.seconds, estimate.round_trip_time.nanos = divmod(max(0, int(rtt)), 1_000_000_000)
            estimate.clock_skew.seconds, estimate.clock_skew.nanos = _duration_parts(int(skew))
            response.state.status = time_sync_pb2.TimeSyncState.STATUS_OK
            response.state.measurement_time.CopyFrom(response.header.request_received_timestamp)
        else:
            response.state.status = time_sync_pb2.TimeSyncState.STATUS_MORE_SAMPLES_NEEDED


def _duration_parts(ns: int) -> tuple[int, int]:
    """Seconds and nanos of a Duration with matching signs."""
    seconds = int(ns / 1_000_000_000)
    return seconds, int(ns - seconds * 1_000_000_000)


class _Estop(_Part, estop_service_pb2_grpc.EstopServiceServicer):
    def _add_endpoint(self, endpoint) -> estop_pb2.EstopEndpoint:
        """Register an endpoint under a new unique id; it stops the robot until its first check-in."""
        proto = estop_pb2.EstopEndpoint()
        proto.CopyFrom(endpoint)
        proto.unique_id = str(self.s._estop_next)
        self.s._estop_next += 1
        self.s.estop_endpoints[proto.unique_id] = {
            "proto": proto,
            "challenge": secrets.randbits(63),
            "level": estop_pb2.ESTOP_LEVEL_CUT,
            "last_ok": None,
        }
        return proto

    def _config(self, out) -> None:
        out.unique_id = self.s.estop_config_id
        for entry in self.s.estop_endpoints.values():
            out.endpoints.add().CopyFrom(entry["proto"])

    @unary(estop_pb2.RegisterEstopEndpointResponse)
    def RegisterEstopEndpoint(self, request, response):
        response.request.CopyFrom(request)
        with self.s.lock:
            if request.target_config_id != self.s.estop_config_id:
                response.status = estop_pb2.RegisterEstopEndpointResponse.STATUS_CONFIG_MISMATCH
                return
            # The new endpoint takes the slot of the target: by unique id, else the first of its role.
            target = request.target_endpoint
            slot = target.unique_id if target.unique_id in self.s.estop_endpoints else None
            if slot is None and target.role:
                slot = next((k for k, e in self.s.estop_endpoints.items() if e["proto"].role == target.role), None)
            if slot is not None:
                del self.s.estop_endpoints[slot]
            response.new_endpoint.CopyFrom(self._add_endpoint(request.new_endpoint))
            response.status = estop_pb2.RegisterEstopEndpointResponse.STATUS_SUCCESS

    @unary(estop_pb2.DeregisterEstopEndpointResponse)
    def DeregisterEstopEndpoint(self, request, response):
        response.request.CopyFrom(request)
        with self.s.lock:
            if self.s.body.motor_power_on:
                response.status = estop_pb2.DeregisterEstopEndpointResponse.STATUS_MOTORS_ON
            elif self.s.estop_endpoints.pop(request.target_endpoint.unique_id, None) is None:
                response.status = estop_pb2.DeregisterEstopEndpointResponse.STATUS_ENDPOINT_MISMATCH
            else:
                response.status = estop_pb2.DeregisterEstopEndpointResponse.STATUS_SUCCESS

    @unary(estop_pb2.GetEstopConfigResponse)
    def GetEstopConfig(self, request, response):
        response.request.CopyFrom(request)
        with self.s.lock:
            self._config(response.active_config)

    @unary(estop_pb2.SetEstopConfigResponse)
    def SetEstopConfig(self, request, response):
        response.request.CopyFrom(request)
        with self.s.lock:
            if request.target_config_id != self.s.estop_config_id:
                response.status = estop_pb2.SetEstopConfigResponse.STATUS_INVALID_ID
            elif self.s.body.motor_power_on:
                response.status = estop_pb2.SetEstopConfigResponse.STATUS_MOTORS_ON
            else:
                # A new configuration replaces every endpoint, the operator's built-in one included.
                self.s.emu.external_estop = False
                self.s.estop_endpoints = {}
                self.s.estop_config_id = str(int(self.s.estop_config_id) + 1)
                for endpoint in request.config.endpoints:
                    self._add_endpoint(endpoint)
                response.status = estop_pb2.SetEstopConfigResponse.STATUS_SUCCESS
            self._config(response.active_config)

    @unary(estop_pb2.GetEstopSystemStatusResponse)
    def GetEstopSystemStatus(self, request, response):
        with self.s.lock:
            status = response.status
            for entry in self.s.estop_endpoints.values():
                item = status.endpoints.add()
                item.endpoint.CopyFrom(entry["proto"])
                item.stop_level = self.s._endpoint_level(entry)
            if self.s.emu.faults.estop:
                item = status.endpoints.add()
                item.endpoint.name, item.endpoint.role = "hardware E-Stop (injected)", "PDB_rooted"
                item.stop_level = estop_pb2.ESTOP_LEVEL_CUT
            status.stop_level = self.s.estop_level()

    @unary(estop_pb2.EstopCheckInResponse)
    def EstopCheckIn(self, request, response):
        response.request.CopyFrom(request)
        with self.s.lock:
            entry = self.s.estop_endpoints.get(request.endpoint.unique_id)
            if entry is None:
                response.status = estop_pb2.EstopCheckInResponse.STATUS_ENDPOINT_UNKNOWN
                return
            expected = ctypes.c_ulonglong(~entry["challenge"]).value
            if request.challenge == entry["challenge"] and request.response == expected:
                entry["level"] = request.stop_level
                entry["last_ok"] = time.monotonic()
                response.status = estop_pb2.EstopCheckInResponse.STATUS_OK
            else:
                response.status = estop_pb2.EstopCheckInResponse.STATUS_INCORRECT_CHALLENGE_RESPONSE
            entry["challenge"] = secrets.randbits(63)
            response.challenge = entry["challenge"]
        self.s.estop_tick()


class _Lease(_Part, lease_service_pb2_grpc.LeaseServiceServicer):
    def _grant(self, client: str) -> Lease:
        s = self.s
        s.lease_counter += 1
        proto = lease_pb2.Lease(resource=LEASE_RESOURCE, epoch=s.lease_epoch, sequence=[s.lease_counter])
        proto.client_names.append(client)
        s.lease, s.lease_owner, s.lease_last_use = Lease(proto), client, time.monotonic()
        s.emu.record_lease(f"granted to {client}")
        return s.lease

    def _stale(self) -> bool:
        if self.s.emu.faults.lease_taken:
            return False  # the injected owner keeps its lease alive, as the tablet does
        return time.monotonic() - self.s.lease_last_use > LEASE_STALE_S

    @unary(lease_pb2.AcquireLeaseResponse)
    def AcquireLease(self, request, response):
        with self.s.lock:
            if request.resource != LEASE_RESOURCE:
                response.status = lease_pb2.AcquireLeaseResponse.STATUS_INVALID_RESOURCE
            elif self.s.lease_owner and not self._stale():
                response.status = lease_pb2.AcquireLeaseResponse.STATUS_RESOURCE_ALREADY_CLAIMED
                response.lease_owner.client_name = self.s.lease_owner
            else:
                lease = self._grant(request.header.client_name or "client")
                response.status = lease_pb2.AcquireLeaseResponse.STATUS_OK
                response.lease.CopyFrom(lease.lease_proto)
                response.lease_owner.client_name = self.s.lease_owner

    @unary(lease_pb2.TakeLeaseResponse)
    def TakeLease(self, request, response):
        with self.s.lock:
            self.s.emu.take_lease(request.header.client_name or "client")
            response.status = lease_pb2.TakeLeaseResponse.STATUS_OK
            response.lease.CopyFrom(self.s.lease.lease_proto)
            response.lease_owner.client_name = self.s.lease_owner

    @unary(lease_pb2.ReturnLeaseResponse)
    def ReturnLease(self, request, response):
        with self.s.lock:
            result = self.s.lease_check(request.lease) if self.s.lease is not None else None
            if result is not None and result.status == lease_pb2.LeaseUseResult.STATUS_OK:
                self.s.emu.record_lease(f"returned by {self.s.lease_owner}")
                self.s.lease, self.s.lease_owner = None, ""
                response.status = lease_pb2.ReturnLeaseResponse.STATUS_OK
            else:
                response.status = lease_pb2.ReturnLeaseResponse.STATUS_NOT_ACTIVE_LEASE

    @unary(lease_pb2.RetainLeaseResponse)
    def RetainLease(self, request, response):
        """Liveness only: any lease of the active lease's root (a sublease the client made for an
        earlier command, overtaken in flight by a newer one) keeps it alive."""
        with self.s.lock:
            active = self.s.lease
            incoming = request.lease
            same_root = (
                active is not None
                and incoming.epoch == active.lease_proto.epoch
                and incoming.resource == active.lease_proto.resource
                and incoming.sequence[:1] == active.lease_proto.sequence[:1]
            )
            if same_root:
                result = response.lease_use_result
                result.status = lease_pb2.LeaseUseResult.STATUS_OK
                result.attempted_lease.CopyFrom(incoming)
                result.latest_known_lease.CopyFrom(active.lease_proto)
                result.owner.client_name = self.s.lease_owner
                self.s.lease_last_use = time.monotonic()
            else:
                response.lease_use_result.CopyFrom(self.s.lease_check(incoming))

    @unary(lease_pb2.ListLeasesResponse)
    def ListLeases(self, request, response):
        with self.s.lock:
            item = response.resources.add()
            item.resource = LEASE_RESOURCE
            if self.s.lease is not None:
                item.lease.CopyFrom(self.s.lease.lease_proto)
                item.lease_owner.client_name = self.s.lease_owner
                item.is_stale = self._stale()


class _Power(_Part, power_service_pb2_grpc.PowerServiceServicer):
    @unary(power_pb2.PowerCommandResponse)
    def PowerCommand(self, request, response):
        result = self.s.lease_check(request.lease)
        response.lease_use_result.CopyFrom(result)
        if result.status != lease_pb2.LeaseUseResult.STATUS_OK:
            response.status = power_pb2.STATUS_UNKNOWN
            return
        body = self.s.body
        if request.request in (
            power_pb2.PowerCommandRequest.REQUEST_ON_MOTORS,
            power_pb2.PowerCommandRequest.REQUEST_ON,
        ):
            if self.s.estop_level() != estop_pb2.ESTOP_LEVEL_NONE:
                response.status = power_pb2.STATUS_ESTOPPED
                return
            body.power_on()
            kind = "on"
        elif request.request in (
            power_pb2.PowerCommandRequest.REQUEST_OFF_MOTORS,
            power_pb2.PowerCommandRequest.REQUEST_OFF,
        ):
            body.cut_power("power off request")
            kind = "off"
        else:
            response.status = power_pb2.STATUS_INTERNAL_ERROR
            return
        with self.s.lock:
            command_id = self.s._power_next
            self.s._power_next += 1
            self.s.power_commands[command_id] = kind
        response.power_command_id = command_id
        response.status = power_pb2.STATUS_IN_PROGRESS if kind == "on" else power_pb2.STATUS_SUCCESS

    @unary(power_pb2.PowerCommandFeedbackResponse)
    def PowerCommandFeedback(self, request, response):
        kind = self.s.power_commands.get(request.power_command_id)
        body = self.s.body
        if kind == "on":
            if body.motor_power_on:
                response.status = power_pb2.STATUS_SUCCESS
            elif body.behaviour is Behaviour.POWERING_ON:
                response.status = power_pb2.STATUS_IN_PROGRESS
            else:
                response.status = power_pb2.STATUS_ESTOPPED if self.s.estop_cut else power_pb2.STATUS_FAULTED
        elif kind == "off":
            response.status = power_pb2.STATUS_SUCCESS
        else:
            response.status = power_pb2.STATUS_INTERNAL_ERROR


def _sample_after(snaps, sent: int) -> tuple[Snapshot | None, Snapshot | None]:
    """(the sample after ``sent`` or the oldest kept if that one is gone, the newest sample); the newest
    is None when the deque moved while looking (the caller looks again).

    Indexes the deque (never iterates it): the physics thread appends while streams read, and a full
    deque drops its oldest sample as it appends.
    """
    try:
        newest = snaps[-1]
        if newest.seq <= sent:
            return None, newest
        i = len(snaps) - 1 - (newest.seq - (sent + 1))
        snap = snaps[max(i, 0)]
    except IndexError:
        return None, None
    if i >= 0 and snap.seq != sent + 1:
        return None, None
    return snap, newest


def _enum(enum, name: str) -> int:
    """The value of ``name`` in a protobuf enum, 0 (unknown) if it has no such name."""
    try:
        return enum.Value(name)
    except ValueError:
        return 0


def _pose(out, snap: Snapshot) -> None:
    p, q = snap.position, snap.quat_wxyz
    out.position.x, out.position.y, out.position.z = (float(v) for v in p)
    out.rotation.w, out.rotation.x, out.rotation.y, out.rotation.z = (float(v) for v in q)


def _velocity(out, snap: Snapshot) -> None:
    out.linear.x, out.linear.y, out.linear.z = (float(v) for v in snap.lin_vel_odom)
    out.angular.x, out.angular.y, out.angular.z = (float(v) for v in snap.ang_vel_odom)


class _RobotState(_Part, robot_state_service_pb2_grpc.RobotStateServiceServicer):
    @unary(robot_state_pb2.RobotStateResponse)
    def GetRobotState(self, request, response):
        state = response.robot_state
        snap = self.s.body.snapshot
        emu = self.s.emu
        power = state.power_state
        set_ns(power.timestamp, snap.robot_ns)
        behaviour = self.s.body.behaviour
        power.motor_power_state = (
            robot_state_pb2.PowerState.STATE_POWERING_ON
            if behaviour is Behaviour.POWERING_ON
            else robot_state_pb2.PowerState.STATE_ON
            if self.s.body.motor_power_on
            else robot_state_pb2.PowerState.STATE_OFF
        )
        power.locomotion_charge_percentage.value = emu.battery_percent
        battery = state.battery_states.add()
        battery.identifier = "emulated battery"
        battery.charge_percentage.value = emu.battery_percent
        battery.estimated_runtime.seconds = int(emu.battery_percent * 54)
        battery.status = robot_state_pb2.BatteryState.STATUS_DISCHARGING
        stopped = self.s.estop_level() != estop_pb2.ESTOP_LEVEL_NONE
        with self.s.lock:
            for entry in self.s.estop_endpoints.values():
                item = state.estop_states.add()
                item.name = entry["proto"].name or entry["proto"].role
                item.type = robot_state_pb2.EStopState.TYPE_SOFTWARE
                cut = self.s._endpoint_level(entry) != estop_pb2.ESTOP_LEVEL_NONE
                item.state = (
                    robot_state_pb2.EStopState.STATE_ESTOPPED if cut else robot_state_pb2.EStopState.STATE_NOT_ESTOPPED
                )
        if emu.external_estop or emu.faults.estop:
            item = state.estop_states.add()
            item.name = "hardware E-Stop" if emu.faults.estop else "operator E-Stop"
            item.type = robot_state_pb2.EStopState.TYPE_HARDWARE
            item.state = (
                robot_state_pb2.EStopState.STATE_ESTOPPED
                if emu.faults.estop
                else robot_state_pb2.EStopState.STATE_NOT_ESTOPPED
            )
        if stopped and not state.estop_states:
            item = state.estop_states.add()
            item.name, item.state = "no E-Stop endpoint", robot_state_pb2.EStopState.STATE_ESTOPPED
        kin = state.kinematic_state
        set_ns(kin.acquisition_timestamp, snap.robot_ns)
        for i, name in enumerate(SDK):
            joint = kin.joint_states.add()
            joint.name = name.replace("_", ".", 1)
            isaac = SDK_FROM_ISAAC[i]
            joint.position.value = float(snap.q[isaac])
            joint.velocity.value = float(snap.dq[isaac])
            joint.load.value = float(snap.tau[isaac]) * (-1.0 if emu.faults.flipped_loads else 1.0)
        _velocity(kin.velocity_of_body_in_odom, snap)
        _velocity(kin.velocity_of_body_in_vision, snap)
        _frames(kin.transforms_snapshot, snap)
        for i, contact in enumerate(snap.contacts):
            foot = state.foot_state.add()
            x, y, z = (float(v) for v in snap.feet_body[i])
            foot.foot_position_rt_body.x, foot.foot_position_rt_body.y, foot.foot_position_rt_body.z = x, y, z
            foot.contact = _CONTACT[contact]


def _frames(out, snap: Snapshot) -> None:
    """The kinematic state's transforms snapshot (robot_state.proto:419-457): ``body`` at the root;
    ``odom`` and ``vision`` (the emulator's vision is its odom), ``flat_body`` and ``feet_center``
    under it; ``gpe`` (flat ground under the feet) under ``odom``. All at the sample's time."""
    from bosdyn.client.math_helpers import Quat, SE3Pose

    qw, qx, qy, qz = (float(v) for v in snap.quat_wxyz)
    odom_body = SE3Pose(*(float(v) for v in snap.position), Quat(qw, qx, qy, qz))
    body_odom = odom_body.inverse()
    yaw = odom_body.rot.to_yaw()
    flat = SE3Pose(odom_body.x, odom_body.y, odom_body.z, Quat.from_yaw(yaw))
    feet_odom = np.array([odom_body.transform_point(*(float(v) for v in foot)) for foot in snap.feet_body])
    centre = feet_odom.mean(axis=0)
    front, hind = feet_odom[:2, :2].mean(axis=0), feet_odom[2:, :2].mean(axis=0)
    heading = float(np.arctan2(*(front - hind)[::-1]))
    feet_center = SE3Pose(*(float(v) for v in centre), Quat.from_yaw(heading))
    touching = [feet_odom[i, 2] for i, c in enumerate(snap.contacts) if c]
    ground = float(np.mean(touching)) if touching else 0.0
    gpe = SE3Pose(odom_body.x, odom_body.y, ground, Quat())
    edges = {
        "body": ("", SE3Pose(0.0, 0.0, 0.0, Quat())),
        "odom": ("body", body_odom),
        "vision": ("body", body_odom),
        "flat_body": ("body", body_odom * flat),
        "feet_center": ("body", body_odom * feet_center),
        "gpe": ("odom", gpe),
    }
    for child, (parent, pose) in edges.items():
        edge = out.child_to_parent_edge_map[child]
        edge.parent_frame_name = parent
        edge.parent_tform_child.CopyFrom(pose.to_proto())


class _StateStream(_Part, robot_state_service_pb2_grpc.RobotStateStreamingServiceServicer):
    """~333 Hz state messages: every sample once, in order, after the added latency; nothing while stalled."""

    def GetRobotStateStream(self, request, context):
        """Every sample in order, so the rate stays at the robot's (a stalled emulator catches up in a
        burst, stamped at each sample's own time). A reader more than :data:`MAX_STREAM_BACKLOG_S`
        behind skips ahead (counted and reported) instead of staying behind for seconds."""
        body, faults, emu = self.s.body, self.s.emu.faults, self.s.emu
        sent = body.snapshot.seq - 1
        backlog = max(1, round(MAX_STREAM_BACKLOG_S * emu.state_rate_hz))
        alive = context.is_active
        while alive() and not emu.stopping:
            snap, newest = _sample_after(body.snapshots, sent)
            if newest is None:
                continue  # the deque moved under us: look again
            if faults.state_stall:
                sent = newest.seq
            elif snap is not None:
                if newest.seq - snap.seq > backlog:
                    skipped = newest.seq - backlog - sent
                    sent = newest.seq - backlog
                    emu.counters["state_samples_skipped"] += skipped
                    emu.log(
                        "stall",
                        f"a state stream reader fell {(newest.robot_ns - snap.robot_ns) * 1e-6:.0f} ms behind: "
                        f"{skipped} samples skipped",
                    )
                    continue
                now = time.monotonic()
                if snap.ready_at > now:
                    time.sleep(min(snap.ready_at - now, 0.05))  # the added latency
                    continue
                sent = snap.seq
                emu.counters["state_messages"] += 1
                yield self.message(snap, request)
                continue
            with body.snapshot_ready:
                if body.snapshot.seq <= sent or faults.state_stall:
                    body.snapshot_ready.wait(0.05)

    def message(self, snap: Snapshot, request) -> robot_state_pb2.RobotStateStreamResponse:
        """One stream message (~333 Hz, so plain float assignments, no per-field generators)."""
        msg = robot_state_pb2.RobotStateStreamResponse()
        msg.header.request_header.CopyFrom(request.header)
        msg.header.error.code = header_pb2.CommonError.CODE_OK
        set_ns(msg.header.response_timestamp, self.s.now())
        js = msg.joint_states
        set_ns(js.acquisition_timestamp, snap.robot_ns)
        js.position.extend(snap.q[SDK_FROM_ISAAC].tolist())
        js.velocity.extend(snap.dq[SDK_FROM_ISAAC].tolist())
        js.load.extend((snap.tau[SDK_FROM_ISAAC] * (-1.0 if self.s.emu.faults.flipped_loads else 1.0)).tolist())
        kin = msg.kinematic_state
        kin.acquisition_timestamp.CopyFrom(js.acquisition_timestamp)
        px, py, pz = snap.position.tolist()
        qw, qx, qy, qz = snap.quat_wxyz.tolist()
        pose = kin.odom_tform_body
        pose.position.x, pose.position.y, pose.position.z = px, py, pz
        pose.rotation.x, pose.rotation.y, pose.rotation.z, pose.rotation.w = qx, qy, qz, qw
        kin.vision_tform_body.CopyFrom(pose)
        vx, vy, vz = snap.lin_vel_odom.tolist()
        wx, wy, wz = snap.ang_vel_odom.tolist()
        velocity = kin.velocity_of_body_in_odom
        velocity.linear.x, velocity.linear.y, velocity.linear.z = vx, vy, vz
        velocity.angular.x, velocity.angular.y, velocity.angular.z = wx, wy, wz
        kin.velocity_of_body_in_vision.CopyFrom(velocity)
        imu = msg.inertial_state
        imu.packet_rate, imu.identifier, imu.mounting_link_name = 333.0, "emulated IMU", "body"
        packet = imu.packets.add()
        ax, ay, az = snap.acc_body.tolist()
        bx, by, bz = snap.ang_vel_body.tolist()
        acc, gyro, rot = (
            packet.acceleration_rt_odom_in_link_frame,
            packet.angular_velocity_rt_odom_in_link_frame,
            packet.odom_rot_link,
        )
        acc.x, acc.y, acc.z = ax, ay, az
        gyro.x, gyro.y, gyro.z = bx, by, bz
        rot.x, rot.y, rot.z, rot.w = qx, qy, qz, qw
        packet.timestamp.CopyFrom(js.acquisition_timestamp)
        msg.contact_states.extend(_CONTACT[c] for c in snap.contacts)
        msg.last_command.user_command_key = snap.last_key
        if snap.last_received_ns:
            set_ns(msg.last_command.received_timestamp, snap.last_received_ns)
        return msg


class _RobotCommand(_Part, robot_command_service_pb2_grpc.RobotCommandServiceServicer):
    @staticmethod
    def _stand_offset(command) -> BodyOffset | None:
        """The stand's ``mobility_params`` body offset (height, footprint_R_body), if it has one.

        ``base_offset_rt_footprint``'s last point is the pose held (spot-sdk ``robot_command.py:1763-1796``
        builds a one-point trajectory); other body control (``body_pose``, manipulation assist) is
        not emulated and gives the nominal stand.
        """
        packed = command.synchronized_command.mobility_command.params
        if not packed.type_url:
            return None
        params = spot_command_pb2.MobilityParams()
        if not packed.Unpack(params) or not params.body_control.HasField("base_offset_rt_footprint"):
            return None
        points = params.body_control.base_offset_rt_footprint.points
        if not points:
            return None
        pose = points[-1].pose
        r = pose.rotation
        w, x, y, z = (r.w, r.x, r.y, r.z) if pose.HasField("rotation") else (1.0, 0.0, 0.0, 0.0)
        return BodyOffset.from_quaternion(pose.position.z, w, x, y, z)

    @staticmethod
    def _kind(command) -> str | None:
        if command.HasField("full_body_command"):
            fb = command.full_body_command
            if fb.HasField("safe_power_off_request"):
                return "safe_power_off"
            if fb.HasField("joint_request"):
                return "joint"
            return None
        if command.HasField("synchronized_command"):
            sync = command.synchronized_command
            if sync.HasField("arm_command") or sync.HasField("gripper_command"):
                return None
            mobility = sync.mobility_command
            if mobility.HasField("stand_request"):
                return "stand"
            if mobility.HasField("sit_request"):
                return "sit"
        return None

    @unary(robot_command_pb2.RobotCommandResponse)
    def RobotCommand(self, request, response):
        result = self.s.lease_check(request.lease)
        response.lease_use_result.CopyFrom(result)
        if result.status != lease_pb2.LeaseUseResult.STATUS_OK:
            response.status = robot_command_pb2.RobotCommandResponse.STATUS_UNKNOWN
            return
        kind = self._kind(request.command)
        status = robot_command_pb2.RobotCommandResponse
        if kind is None:
            response.status = status.STATUS_UNSUPPORTED
            response.message = "the emulator runs stand, sit, safe power-off and joint control only"
        elif kind == "joint" and self.s.emu.faults.no_licence:
            response.status = status.STATUS_UNSUPPORTED
            response.message = "joint control requires a Joint Control licence, which this robot lacks"
            self.s.body.note("joint control refused: no licence")
            self.s.emu.log("joint", "joint control refused: the robot has no Joint Control licence")
        elif not self.s.body.motor_power_on and kind != "safe_power_off":
            response.status = status.STATUS_NOT_POWERED_ON
            response.message = "motor power is off"
        else:
            offset = self._stand_offset(request.command) if kind == "stand" else None
            response.robot_command_id = self.s.body.command(kind, offset)
            response.status = status.STATUS_OK

    @unary(robot_command_pb2.RobotCommandFeedbackResponse)
    def RobotCommandFeedback(self, request, response):
        command_id = request.robot_command_id or self.s.body.current_command
        record = self.s.body.commands.get(command_id)
        overall, specific = self.s.body.feedback(command_id)
        feedback_status = basic_command_pb2.RobotCommandFeedbackStatus
        if record is not None:
            value = feedback_status.Status.Value(overall)
            if record.kind in ("stand", "sit"):
                mobility = response.feedback.synchronized_feedback.mobility_command_feedback
                mobility.status = value
                detail = mobility.stand_feedback if record.kind == "stand" else mobility.sit_feedback
                detail.status = _enum(type(detail).Status, specific)
            else:
                full = response.feedback.full_body_feedback
                full.status = value
                if record.kind == "safe_power_off":
                    full.safe_power_off_feedback.status = _enum(
                        basic_command_pb2.SafePowerOffCommand.Feedback.Status, specific
                    )
                elif record.kind == "joint":
                    full.joint_feedback.status = _enum(basic_command_pb2.JointCommand.Feedback.Status, specific)
                    full.joint_feedback.num_messages_received = self.s.body.counters["joint_commands"]

    @unary(robot_command_pb2.ClearBehaviorFaultResponse)
    def ClearBehaviorFault(self, request, response):
        response.lease_use_result.CopyFrom(self.s.lease_check(request.lease))
        response.status = robot_command_pb2.ClearBehaviorFaultResponse.STATUS_CLEARED


class _CommandStream(_Part, robot_command_service_pb2_grpc.RobotCommandStreamingServiceServicer):
    """Joint commands, each stamped on arrival (plus the added latency); the robot may end the stream.

    A command that arrives after its own ``end_time`` ends the stream with ``STATUS_EXPIRED`` (that
    status's documented meaning); joint control ended on the robot's side (E-Stop, lease taken,
    superseded, ``--on-expiry end``) answers the next message with the status it ended with.
    """

    def JointControlStream(self, request_iterator, context):
        s, body = self.s, self.s.body
        received = s.now()
        response = robot_command_pb2.JointControlStreamResponse()
        status = robot_command_pb2.JointControlStreamResponse
        with s.lock:
            epoch = s.stream_epoch
            s.open_streams += 1
        body.stream_started()
        s.emu.counters["command_streams"] += 1
        first = None
        messages = 0
        try:
            for request in request_iterator:
                messages += 1
                if first is None:
                    first = request
                if s.emu.faults.no_licence:
                    response.status = status.STATUS_INACTIVE
                    response.message = "joint control is not licensed on this robot"
                    break
                if s.stream_epoch != epoch and s.stream_end is not None:
                    code, message = s.stream_end
                    response.status = status.Status.Value(code)
                    response.message = message
                    break
                late = self._apply(request, round(s.emu.faults.latency_s * 1e9))
                if late:
                    response.status = status.STATUS_EXPIRED
                    response.message = f"{late}: check time sync and the link (commands must arrive before end_time)"
                    break
            else:
                response.status = status.STATUS_OK
        finally:
            with s.lock:
                s.open_streams -= 1
        name = status.Status.Name(response.status)
        by = "the client (it half-closed)" if response.status == status.STATUS_OK else "the robot"
        detail = f": {response.message}" if response.message else ""
        body.note("joint stream ended by " + ("the client" if response.status == status.STATUS_OK else "the robot"))
        s.emu.log("stream", f"joint control stream ended by {by} after {messages} messages, {name}{detail}")
        request = first if first is not None else robot_command_pb2.JointControlStreamRequest()
        return s.header(response, request, received)

    def _apply(self, request, delay_ns: int) -> str:
        """Hand one message to the body; why the robot refused it ("" if it did not)."""
        cmd = request.joint_command
        s = self.s
        s.emu.counters["joint_messages"] += 1
        if len(cmd.position) < len(SDK):
            return ""
        gains = cmd.gains
        kp = list(gains.k_q_p)[: len(SDK)] if len(gains.k_q_p) >= len(SDK) else None
        kd = list(gains.k_qd_p)[: len(SDK)] if kp is not None and len(gains.k_qd_p) >= len(SDK) else None
        if kp is not None and kd is None:
            kp = None
        q = np.asarray(list(cmd.position)[: len(SDK)], dtype=np.float64)
        if not np.all(np.isfinite(q)):
            return ""
        return s.body.joint_command(q, kp, kd, stamp_ns(cmd.end_time), cmd.user_command_key, delay_ns)


class _License(_Part, license_service_pb2_grpc.LicenseServiceServicer):
    def _features(self) -> list[str]:
        base = ["basic_mobility", "api_access"]
        return base if self.s.emu.faults.no_licence else [*base, JOINT_FEATURE]

    @unary(license_pb2.GetLicenseInfoResponse)
    def GetLicenseInfo(self, request, response):
        info = response.license
        info.status = license_pb2.LicenseInfo.STATUS_VALID
        info.id, info.robot_serial = "emulator-licence", "EMU-0001"
        info.licensed_features.extend(self._features())

    @unary(license_pb2.GetFeatureEnabledResponse)
    def GetFeatureEnabled(self, request, response):
        have = set(self._features())
        for code in request.feature_codes:
            response.feature_enabled[code] = code in have


class Gatekeeper(grpc.ServerInterceptor):
    """User tokens on every call but login and robot id; the added latency on unary calls."""

    def __init__(self, tokens: Callable[[], set[str]], latency_s: Callable[[], float]) -> None:
        self._tokens, self._latency = tokens, latency_s

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        if not method.startswith(OPEN_METHODS):
            metadata = dict(details.invocation_metadata or ())
            bearer = metadata.get("authorization", "")
            if not bearer.startswith("Bearer ") or bearer[7:] not in self._tokens():
                return _refusal(handler)
        if handler.unary_unary is not None:
            inner = handler.unary_unary
            latency = self._latency

            def delayed(request, context):
                wait = latency()
                if wait > 0:
                    time.sleep(wait)  # the request's way in
                response = inner(request, context)
                wait = latency()
                if wait > 0:
                    time.sleep(wait)  # the response's way out
                return response

            return grpc.unary_unary_rpc_method_handler(
                delayed,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _refusal(handler):
    def refuse(_request, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "401 Unauthorized: missing or unknown user token")

    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    )
    for attribute, make in kinds:
        if getattr(handler, attribute) is not None:
            return make(
                refuse,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return None
