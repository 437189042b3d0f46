"""The Spot API emulator: a gRPC server over TLS that bosdyn-client talks to as to a real Spot.

Importable for tests (:class:`SpotEmulator`) and a command (``spot-policy emulator``)::

    export BOSDYN_CLIENT_USERNAME=user BOSDYN_CLIENT_PASSWORD=...    # the login it accepts
    spot-policy emulator --port 50443 --tls-dir /tmp/spot-emulator [--fault estop@20] [--latency-ms 80@10]
    ros2 launch spot_policy robot.launch.py hostname:=127.0.0.1 port:=50443 ca_cert:=/tmp/spot-emulator/ca.pem

The robot clock runs ``clock_skew_s`` ahead of the host's (a real robot's clock differs too), so a
client that forgets time sync sends commands that are already expired.

Faults (:data:`FAULTS`), on the command line and through :meth:`SpotEmulator.inject`:
``wrong_password`` (the robot's password changed: logins fail), ``no_licence`` (no joint-control
licence: activation and the stream are refused), ``estop`` (an E-Stop is pressed: motor power
cut), ``lease_taken`` (another client, "tablet", takes the lease), ``state_stall`` (the state
stream goes silent, the connection stays up), ``latency`` (seconds added to every message each
way), ``no_time_sync`` (the time-sync service never gets ready), ``flipped_loads`` (joint loads
reported with the opposite sign: a robot whose load convention is not the one the hand-over assumes).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

from spot_policy.core.realtime_gc import freeze_startup_heap

FAULTS = (
    "wrong_password",
    "no_licence",
    "estop",
    "lease_taken",
    "state_stall",
    "latency",
    "no_time_sync",
    "flipped_loads",
)


@dataclass
class Faults:
    wrong_password: bool = False
    no_licence: bool = False
    estop: bool = False
    lease_taken: bool = False
    state_stall: bool = False
    latency_s: float = 0.0
    no_time_sync: bool = False
    flipped_loads: bool = False


class SpotEmulator:
    """A physics-backed Spot behind the Spot API. ``start()`` binds; ``port`` 0 picks a free one."""

    def __init__(
        self,
        username: str,
        password: str,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_dir: str | Path | None = None,
        clock_skew_s: float = 2.5,
        external_estop: bool = True,
        battery_percent: float = 87.0,
        state_rate_hz: float = 333.0,
        expiry: str = "stand",
        on_log: Callable[[str], None] | None = None,
    ) -> None:
        if not username or not password:
            raise ValueError("the emulator needs a username and a password to accept")
        self._login = (username, password)
        self.host = host
        self.requested_port = int(port)
        self.port = 0
        self._tls_dir = Path(tls_dir) if tls_dir else None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.clock_skew_ns = round(clock_skew_s * 1e9)
        self.external_estop = external_estop  # an operator's E-Stop, registered and released
        self.battery_percent = float(battery_percent)
        self.state_rate_hz = float(state_rate_hz)
        self.faults = Faults()
        self.fault_times: dict[str, float] = {}  # fault -> time.monotonic() when injected
        self.lease_events: deque[tuple[float, str]] = deque(maxlen=100)
        self.counters = {"state_messages": 0, "command_streams": 0, "joint_messages": 0, "state_samples_skipped": 0}
        from spot_hw_bridge.emulator.body import ExpiryMode

        self.expiry = ExpiryMode(expiry)
        #: One line per event (expiry, stream, lease, power, stall, joint, command, fault), in order.
        self.log_lines: deque[str] = deque(maxlen=2000)
        self.event_counts: dict[str, int] = {}
        self._on_log = on_log
        self._log_queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._log_writer: threading.Thread | None = None
        self._log_lock = threading.Lock()
        self._t0 = time.monotonic()
        self.stopping = False
        self._server = None
        self._housekeeper: threading.Thread | None = None
        self.ca_path: Path | None = None
        self.body = None
        self.services = None

    def __repr__(self) -> str:  # never the login
        return f"SpotEmulator({self.host}:{self.port})"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SpotEmulator:
        import grpc

        from spot_hw_bridge.emulator.body import RobotBody
        from spot_hw_bridge.emulator.certs import make_tls
        from spot_hw_bridge.emulator.services import SERVICES, Gatekeeper, Services, authority

        if self._tls_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="spot-emulator-")
            self._tls_dir = Path(self._tmp.name)
        tls = make_tls(self._tls_dir, [authority(name) for name, _ in SERVICES], hosts=("localhost", self.host))
        self.ca_path = tls.ca
        self.body = RobotBody(self.robot_now_ns, state_rate_hz=self.state_rate_hz, expiry=self.expiry, report=self.log)
        self.services = Services(self)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="spot_emulator_rpc"),
            interceptors=[Gatekeeper(lambda: self.services.tokens, lambda: self.faults.latency_s)],
            options=[("grpc.so_reuseport", 0)],
        )
        self.services.register(self._server)
        self.port = self._server.add_secure_port(
            f"{self.host}:{self.requested_port}", grpc.ssl_server_credentials([tls.server_credentials()])
        )
        if not self.port:
            raise OSError(f"the emulator cannot listen on {self.host}:{self.requested_port} (port taken?)")
        self.body.start()
        self._server.start()
        self._housekeeper = threading.Thread(target=self._housekeep, name="spot_emulator_estop", daemon=True)
        self._housekeeper.start()
        if self._on_log is not None:
            self._log_writer = threading.Thread(target=self._write_log, name="spot_emulator_log", daemon=True)
            self._log_writer.start()
        return self

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        if self._server is not None:
            self._server.stop(grace=0.5).wait(2.0)
        if self._housekeeper is not None:
            self._housekeeper.join(timeout=2.0)
        if self.body is not None:
            self.body.stop()
        if self._log_writer is not None:
            self._log_queue.put(None)  # the lines so far are written before stop returns
            self._log_writer.join(timeout=2.0)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SpotEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _housekeep(self) -> None:
        """E-Stop endpoints time out even when nobody calls: check them at 50 Hz."""
        while not self.stopping:
            self.services.estop_tick()
            time.sleep(0.02)

    # ------------------------------------------------------------------ the robot's side
    def robot_now_ns(self) -> int:
        return time.time_ns() + self.clock_skew_ns

    def check_login(self, username: str, password: str) -> bool:
        return not self.faults.wrong_password and (username, password) == self._login

    @property
    def lease_owner(self) -> str:
        return self.services.lease_owner if self.services is not None else ""

    def record_lease(self, what: str) -> None:
        self.lease_events.append((time.monotonic(), what))
        self.log("lease", f"body lease {what}")

    def log(self, kind: str, message: str) -> None:
        """One event as one line (``[emulator  12.345 s] kind: message``), counted by kind."""
        line = f"[emulator {time.monotonic() - self._t0:8.3f} s] {kind}: {message}"
        with self._log_lock:
            self.event_counts[kind] = self.event_counts.get(kind, 0) + 1
            self.log_lines.append(line)
        if self._on_log is not None:
            self._log_queue.put(line)  # written on a thread of its own: a slow console never holds the body

    def _write_log(self) -> None:
        while (line := self._log_queue.get()) is not None:
            with contextlib.suppress(Exception):  # a closed console must not stop the robot
                self._on_log(line)

    def summary(self) -> str:
        """The events of this run in one line (printed at exit)."""
        counts = dict(self.event_counts)
        body = self.body.counters if self.body is not None else {}
        stalls = counts.get("stall", 0)
        longest = self.body.longest_stall_s * 1e3 if self.body is not None else 0.0
        return (
            f"Spot API emulator summary: {counts.get('expiry', 0)} expiries "
            f"({body.get('joint_commands_expired_on_arrival', 0)} commands late on arrival, "
            f"{body.get('joint_control_expiries', 0)} lapses, {body.get('joint_control_resumes', 0)} resumed; "
            f"expiry={self.expiry.value}), {counts.get('stream', 0)} stream ends, "
            f"{counts.get('lease', 0)} lease changes, "
            f"{counts.get('power', 0)} power changes, {body.get('falls', 0)} falls, {stalls} stalls"
            + (
                f" (longest {longest:.0f} ms, {body.get('dropped_steps', 0)} physics steps dropped, "
                f"{self.counters['state_samples_skipped']} state samples skipped)"
                if stalls
                else ""
            )
            + f"; {body.get('joint_commands', 0)} joint commands, {self.counters['state_messages']} state messages"
        )

    def take_lease(self, client: str) -> None:
        """Another client takes the body lease (as the tablet does); joint control under the old one ends."""
        from bosdyn.api import lease_pb2
        from bosdyn.client.lease import Lease

        s = self.services
        with s.lock:
            previous = s.lease_owner
            s.lease_counter += 1
            proto = lease_pb2.Lease(resource="body", epoch=s.lease_epoch, sequence=[s.lease_counter])
            proto.client_names.append(client)
            s.lease, s.lease_owner, s.lease_last_use = Lease(proto), client, time.monotonic()
        self.record_lease(f"taken by {client}" + (f" from {previous}" if previous else ""))
        from spot_hw_bridge.emulator.body import Behaviour

        if previous and previous != client and self.body.behaviour is Behaviour.JOINT:
            self.body.command("stand")  # the new owner's robot holds still
            s.end_joint_streams("STATUS_INACTIVE", f"joint control ended: the lease was taken by {client}")

    # ------------------------------------------------------------------ faults
    def inject(self, fault: str, value: float | bool = True) -> None:
        """Turn a fault on (``latency``: ``value`` seconds each way). Effects start at once."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault '{fault}'; faults: {', '.join(FAULTS)}")
        self.fault_times[fault] = time.monotonic()
        self.body.note(f"fault injected: {fault}")
        extra = f" ({float(value) * 1e3:.0f} ms each way)" if fault == "latency" else ""
        self.log("fault", f"injected: {fault}{extra}")
        if fault == "latency":
            self.faults.latency_s = float(value)
            self.body.latency_s = float(value)
        elif fault == "lease_taken":
            self.faults.lease_taken = True
            self.take_lease("tablet")
        else:
            setattr(self.faults, fault, bool(value))
            if fault == "estop" and value:
                self.services.estop_tick()

    def clear(self, fault: str) -> None:
        if fault == "latency":
            self.faults.latency_s = 0.0
            self.body.latency_s = 0.0
        elif fault in FAULTS:
            setattr(self.faults, fault, False)
        self.body.note(f"fault cleared: {fault}")
        self.log("fault", f"cleared: {fault}")

    def status(self) -> dict[str, object]:
        body = self.body
        return {
            # joint_control_lapsed: joint control active, the robot standing on its own (ExpiryMode.STAND)
            "behaviour": body.behaviour.value + ("_lapsed" if body.joint_lapsed else ""),
            "motor_power_on": body.motor_power_on,
            "lease_owner": self.lease_owner,
            "estopped": self.services.estop_level() != 4,
            **self.counters,
            **body.counters,
            "faults": {k: v for k, v in vars(self.faults).items() if v},
        }


# ---------------------------------------------------------------------------- command line
BEHAVIOUR = """\
What the emulator does where a deployment feels it, and what a real Spot does (sources: spot-sdk
v5.1.4, github boston-dynamics/spot-sdk; the RL Researcher Kit, github boston-dynamics/spot-rl-example):

  stand        Spot's own posture (hx 0.014, hy 0.796, kn -1.572 rad: a real Spot's record, LaNMP
               dataset; BD publishes no table), body origin 0.517 m up; honours mobility_params'
               body height and footprint_R_body (robot_command.py:1763-1796), saturated to reach.
               The feet move on straight lines; the stand is damped to rest. Real Spot: its own
               balance controller; loads are the measured torques (joint_control/README.md:73).
  loads        the torque the controller in charge applies, N*m about the joint axis; standing:
               knees about +14..+24, hips a few N*m, steady. Real Spot: sign not stated; BD's
               squat example feeds loads measured standing back as feed-forward (noarm_squat.py:
               105-119). --fault flipped_loads reports them negated (the bridge then refuses).
  late command a command arriving after its own end_time ends the stream with STATUS_EXPIRED:
               what that status means (robot_command.proto:204).
  expiry       --on-expiry stand (default): when the command in force passes its end_time with no
               newer one, the robot stands on its own, the stream stays open and the next command in
               time resumes joint control ("robot will revert to bosdyns standing controller",
               spot-rl-example python/spot/spot.py:125). --on-expiry end: joint control ends and the
               stream is answered STATUS_EXPIRED. BD documents neither; both are assumptions.
  timing       expiry is judged against each command's arrival time (stamped on receipt, before any
               lock); physics catches up every missed step, so every ~333 Hz state sample is sent
               (joint_control/README.md:71); its own stalls over 30 ms are reported.
  state        the stream carries contact_states (robot_state.proto:898); GetRobotState carries
               foot_state and a transforms snapshot: body (root), odom, vision, flat_body,
               feet_center, gpe (robot_state.proto:419-457).
  console      one line per expiry, stream end, lease change, power change, stall, fall (and
               joint activation, stand/sit, fault); a summary with the counts at exit.
  not emulated stepping: taking over a robot already up, its stand is a stand in place (feet
               where they are, a lifted one put down); StanceCommand, STATUS_TOO_DISTANT,
               velocity_safety_limit, behaviour faults.
More, with the hand-over from Spot's stand to a policy: docs/JETSON.md, section 8.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = BEHAVIOUR
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=50443, help="TLS port (default: 50443; a real Spot uses 443)")
    parser.add_argument(
        "--tls-dir",
        type=Path,
        default=None,
        help="where to write ca.pem and the server certificate (default: a temp dir)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME[@SECONDS]",
        help=f"inject a fault, at once or SECONDS after start; repeatable. Faults: {', '.join(FAULTS)} "
        "(latency: use --latency-ms)",
    )
    parser.add_argument(
        "--latency-ms", default=None, metavar="MS[@SECONDS]", help="added latency each way, at once or after SECONDS"
    )
    parser.add_argument("--clock-skew", type=float, default=2.5, help="robot clock minus host clock, s (default 2.5)")
    parser.add_argument("--battery", type=float, default=87.0, help="battery charge to report, percent")
    parser.add_argument(
        "--no-operator-estop",
        action="store_true",
        help="start without the built-in released operator E-Stop (a client must run its own endpoint)",
    )
    parser.add_argument(
        "--on-expiry",
        choices=("stand", "end"),
        default="stand",
        help="when the joint command in force passes its end_time with no newer one: stand (default: the robot "
        "stands, the stream stays open, the next command in time resumes) or end (joint control ends, the stream "
        "ends STATUS_EXPIRED)",
    )
    parser.add_argument("--quiet", action="store_true", help="no event lines (the summary at exit still prints)")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after this long (default: until Ctrl-C)")
    parser.add_argument(
        "--stop-on-stdin-eof",
        action="store_true",
        help="stop when stdin closes (a parent process that dies takes it along)",
    )


def _when(text: str) -> tuple[str, float]:
    name, _, at = text.partition("@")
    try:
        return name, float(at) if at else 0.0
    except ValueError:
        raise SystemExit(f"spot-policy emulator: error: '{text}' is not NAME[@SECONDS]") from None


def main(args: argparse.Namespace) -> int:
    """``spot-policy emulator``: serve until Ctrl-C (or ``--seconds``), injecting the faults on schedule."""
    from spot_hw_bridge.core.errors import ENV_PASSWORD, ENV_USERNAME

    username, password = os.environ.get(ENV_USERNAME, ""), os.environ.get(ENV_PASSWORD, "")
    if not username or not password:
        print(
            f"spot-policy emulator: error: {ENV_USERNAME} and {ENV_PASSWORD} are not set; fix: export them (the "
            "emulator accepts exactly that login, and the bridge reads the same variables)",
            file=sys.stderr,
        )
        return 2
    schedule = [_when(f) for f in args.fault]
    for name, _ in schedule:
        if name not in FAULTS or name == "latency":
            print(f"spot-policy emulator: error: unknown fault '{name}'; faults: {', '.join(FAULTS)}", file=sys.stderr)
            return 2
    if args.latency_ms is not None:
        ms, at = _when(args.latency_ms)
        schedule.append((f"latency={float(ms) / 1000.0}", at))
    sys.setswitchinterval(0.0005)  # the physics thread must wake on time beside the RPC threads
    emulator = SpotEmulator(
        username,
        password,
        host=args.host,
        port=args.port,
        tls_dir=args.tls_dir,
        clock_skew_s=args.clock_skew,
        external_estop=not args.no_operator_estop,
        battery_percent=args.battery,
        expiry=args.on_expiry,
        on_log=None if args.quiet else lambda line: print(line, flush=True),
    )
    try:
        emulator.start()
    except OSError as exc:
        print(f"spot-policy emulator: error: {exc}; fix: choose another --port", file=sys.stderr)
        return 1
    freeze_startup_heap()  # a full collection would stall the physics and the state stream
    print(
        f"Spot API emulator on {args.host}:{emulator.port} (TLS, CA {emulator.ca_path}); try:\n"
        f"  ros2 launch spot_policy robot.launch.py hostname:={args.host} port:={emulator.port} "
        f"ca_cert:={emulator.ca_path}",
        flush=True,
    )
    start = time.monotonic()
    pending = sorted(schedule, key=lambda item: item[1])
    parent_gone = threading.Event()
    if args.stop_on_stdin_eof:
        threading.Thread(target=lambda: (sys.stdin.read(), parent_gone.set()), daemon=True).start()
    try:
        while (args.seconds <= 0 or time.monotonic() - start < args.seconds) and not parent_gone.is_set():
            while pending and time.monotonic() - start >= pending[0][1]:
                name, _ = pending.pop(0)
                if name.startswith("latency="):
                    emulator.inject("latency", float(name.split("=", 1)[1]))
                else:
                    emulator.inject(name)
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        print(emulator.summary(), flush=True)
    return 0
