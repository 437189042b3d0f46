"""``ros2 run spot_hw_bridge hw_bridge``: a real Spot behind the topic contract of DESIGN.md.

A thin adapter around :class:`spot_hw_bridge.core.bridge.HwBridge`: parameters, QoS, publishing and
diagnostics here; the start-up sequence, command streaming and every safety rule in the core.
Same topics, types, frames and QoS as the sim bridge (``joint_states``, ``imu/data``, ``odom``
published best-effort as sensor data; ``joint_command`` subscribed reliable), stamped with the
robot's acquisition time converted to this machine's clock. No ``clock`` topic: on the robot
every node runs on wall time.

Credentials come only from ``BOSDYN_CLIENT_USERNAME`` / ``BOSDYN_CLIENT_PASSWORD``; they are not
parameters and never appear in logs or diagnostics. Exit codes: 0 after a requested shutdown,
1 when the robot cannot be driven (the log's last error line says why and what to do), 2 for a
configuration error.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from spot_hw_bridge.core.bridge import CommandLoss, HwBridge, HwBridgeConfig, Phase, load_gains
from spot_hw_bridge.core.conversion import StateSample
from spot_hw_bridge.core.errors import ENV_HOSTNAME, BridgeError, Credentials
from spot_policy.core import contract, paths
from spot_policy.ros import qos_events
from spot_policy.ros.input_guard import InputGuard
from spot_policy.ros.node_main import run_node
from spot_policy.ros.node_parts import log_event, read_only
from spot_policy.ros.state_publisher import StatePublisher, subscribe_joint_command
from spot_sim_bridge.model import robot_description

NODE_NAME = "hw_bridge"
SWITCH_INTERVAL_S = 0.0005


class HwBridgeNode(Node):
    """Owns the core, the publishers and diagnostics; the core's threads publish state directly."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declared = self.declare_parameters(
            "",
            [
                ("hostname", "", read_only(f"robot address; empty: ${ENV_HOSTNAME}")),
                ("port", 443, read_only("robot API port (443 on Spot; the emulator prints its own)")),
                ("ca_cert", "", read_only("robot CA certificate (PEM); empty: the SDK's Boston Dynamics CA")),
                ("policy", "spot_flat_mjx", read_only("policy whose kp/kd to stream (the policy node's value)")),
                ("logs_root", "", read_only("folder of Isaac Lab runs, for policy 'latest'")),
                ("command_ttl_s", 0.1, read_only("end_time of each command: robot clock now + this")),
                ("command_timeout_s", 0.1, read_only("joint_command older than this -> on_command_loss")),
                ("on_command_loss", "stand", read_only("stand or power_off (also at shutdown)")),
                ("own_estop", False, read_only("register and keep alive an E-Stop endpoint of our own")),
                ("estop_timeout_s", 9.0, read_only("own E-Stop endpoint: robot cuts power after this silence")),
                ("state_timeout_s", 0.1, read_only("no robot state for this long -> safe behaviour")),
                ("max_latency_s", 0.05, read_only("state older than this on arrival -> safe behaviour")),
                ("time_sync_timeout_s", 5.0, read_only("time to establish time sync at start-up")),
                ("connect_timeout_s", 10.0, read_only("RPC timeout of the start-up calls")),
                ("min_battery_percent", 10.0, read_only("refuse to start below this charge")),
                ("diagnostics_period_s", 1.0, read_only("diagnostics period (wall clock)")),
            ],
        )
        p = {param.name: param.value for param in declared}
        hostname = str(p["hostname"]) or os.environ.get(ENV_HOSTNAME, "")
        if str(p["on_command_loss"]) not in {c.value for c in CommandLoss}:
            raise ValueError(f"parameter on_command_loss is '{p['on_command_loss']}'; use stand or power_off")
        config = HwBridgeConfig(
            hostname=hostname,
            port=int(p["port"]),
            ca_cert=str(p["ca_cert"]),
            command_ttl_s=float(p["command_ttl_s"]),
            command_timeout_s=float(p["command_timeout_s"]),
            on_command_loss=CommandLoss(str(p["on_command_loss"])),
            own_estop=bool(p["own_estop"]),
            estop_timeout_s=float(p["estop_timeout_s"]),
            state_timeout_s=float(p["state_timeout_s"]),
            max_latency_s=float(p["max_latency_s"]),
            time_sync_timeout_s=float(p["time_sync_timeout_s"]),
            connect_timeout_s=float(p["connect_timeout_s"]),
            min_battery_percent=float(p["min_battery_percent"]),
            client_name=NODE_NAME,
        ).validated()
        gains = load_gains(
            str(p["policy"]), logs_root=p["logs_root"] or None, policies_dir=paths.config_dir() / "policies"
        )
        credentials = Credentials.from_env()

        self.state_out = StatePublisher(self, contract.SDK_JOINT_ORDER, robot_description())
        self.diag_pub = self.create_publisher(
            DiagnosticArray, contract.TOPIC_DIAGNOSTICS, 10, event_callbacks=qos_events.internal_publisher()
        )
        self.guard = InputGuard(self.get_logger().warning)  # joint_command payloads it cannot read
        subscribe_joint_command(self, lambda names, positions: self.core.command(names, positions), self.guard)
        self._diag_at = (time.monotonic(), 0, 0)

        self.core = HwBridge(config, gains, credentials, self._publish_state, self._on_event)
        self.exit_code: int | None = None
        self._starter: threading.Thread | None = None
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(float(p["diagnostics_period_s"]), self._publish_diagnostics, clock=steady)
        kp, kd = gains.kp, gains.kd
        self.get_logger().info(
            f"robot {config.hostname}:{config.port}, gains from {gains.source} (kp {kp.min():g}-{kp.max():g}, "
            f"kd {kd.min():g}-{kd.max():g}), command_ttl_s {config.command_ttl_s:g}, on command loss: "
            f"{config.on_command_loss.value}; starting up"
        )

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """The start-up sequence on a thread, so diagnostics flow while the robot powers on and stands."""
        self._starter = threading.Thread(target=self._start, name="hw_bridge_start", daemon=True)
        self._starter.start()

    def _start(self) -> None:
        try:
            self.core.start()
        except BridgeError as exc:
            self.get_logger().error(str(exc))
            self.exit_code = 1

    @property
    def finished(self) -> bool:
        """The core cannot continue (start-up failed, or a fatal fault): the process should exit 1."""
        if self.exit_code is None and self.core.phase is Phase.FAULTED and self.core.fault is not None:
            self.exit_code = 1
        return self.exit_code is not None

    def shutdown_robot(self) -> None:
        """Stop streaming, the safe behaviour, return the lease (idempotent)."""
        if self._starter is not None and self._starter.is_alive():
            self.core._stopping.set()
            self._starter.join(timeout=30.0)
        self.core.stop()

    # ---------------------------------------------------------------- state out
    def _publish_state(self, sample: StateSample, stamp_ns: int) -> None:
        """imu, odom, then joint_states with one stamp (an input-triggered policy waits for all three)."""
        self.state_out.publish(
            stamp_ns,
            sample.quat_xyzw,
            sample.ang_vel_body,
            sample.lin_acc_body,
            sample.position,
            sample.lin_vel_body,
            sample.q,
            sample.dq,
            sample.load,
        )

    def _on_event(self, level: str, message: str) -> None:
        log_event(self.get_logger(), level, message)

    # ---------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        core = self.core
        status = core.status()
        now = time.monotonic()
        wall0, states0, sent0 = self._diag_at
        elapsed = max(1e-6, now - wall0)
        states, sent = int(status["states"]), int(status["commands_sent"])
        self._diag_at = (now, states, sent)

        def ms(rolling) -> tuple[str, str]:
            return (f"{rolling.median * 1e3:.3f}", f"{rolling.p99 * 1e3:.3f}") if len(rolling) else ("nan", "nan")

        age = status["command_age_s"]
        send_med, send_p99 = ms(core.state_to_send_s)
        loop_med, loop_p99 = ms(core.loop_latency_s)
        age_med, age_p99 = ms(core.state_age_s)
        values: dict[str, object] = {
            "phase": status["phase"],
            "safe_behaviour_active": str(status["safe_active"]).lower(),
            "reason": status["reason"],
            "fault": status["fault"],
            "robot": f"{core.config.hostname}:{core.config.port}",
            "state_rate_hz": f"{(states - states0) / elapsed:.1f}",
            "command_rate_hz": f"{(sent - sent0) / elapsed:.1f}",
            "command_age_s": "never" if age is None or not math.isfinite(age) else f"{age:.3f}",
            "state_to_command_ms_median": send_med,
            "state_to_command_ms_p99": send_p99,
            "loop_latency_ms_median": loop_med,
            "loop_latency_ms_p99": loop_p99,
            "state_age_ms_median": age_med,
            "state_age_ms_p99": age_p99,
            "clock_skew_s": f"{status['clock_skew_s']:.6f}",
            **{f"preflight.{k}": v for k, v in core.preflight.items()},
            **{k: status[k] for k in ("joint_commands", "rejected_commands", "command_losses", "link_faults")},
            **{k: status[k] for k in ("activations", "stream_restarts", "last_rejection")},
            "bad_messages.joint_command": self.guard.counts.get("joint_command", 0),
        }
        phase = core.phase
        level = {
            Phase.ACTIVE: DiagnosticStatus.OK,
            Phase.READY: DiagnosticStatus.OK,
            Phase.STARTING: DiagnosticStatus.WARN,
            Phase.SAFE: DiagnosticStatus.WARN,
        }.get(phase, DiagnosticStatus.ERROR)
        if phase is Phase.READY and status["command_losses"]:
            level = DiagnosticStatus.WARN
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [
            DiagnosticStatus(
                level=level,
                name=f"{NODE_NAME}: robot link",
                message=str(status["reason"]),
                hardware_id=f"spot ({core.preflight.get('robot', core.config.hostname)})",
                values=[KeyValue(key=k, value=core.redactor.redact(str(v))) for k, v in values.items()],
            )
        ]
        self.diag_pub.publish(msg)


def _stop(node: HwBridgeNode) -> None:
    """Whatever ended the run: the safe stop, then the lease back; the last line says how it ended."""
    node.shutdown_robot()
    fault = node.core.fault
    if fault is not None and node.exit_code:
        node.get_logger().error(f"exiting: {fault}")  # the last line says why
    else:
        returned = "lease returned" if node.core.lease_returned else "no lease held"
        node.get_logger().info(f"shut down: {returned}")


def main(args: list[str] | None = None) -> int:
    """Entry point (``ros2 run spot_hw_bridge hw_bridge``): 0 after a clean stop, 1 when the robot
    could not be used (the line says why), 2 for a configuration error."""
    # The state thread must get the GIL back promptly to answer each state message (333 Hz).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    return run_node(
        NODE_NAME,
        HwBridgeNode,
        args,
        fatal_errors=(BridgeError,),
        until=lambda node: node.finished,
        exit_code=lambda node: node.exit_code or 0,
        on_start=lambda node: node.start(),
        on_stop=_stop,
    )


if __name__ == "__main__":
    sys.exit(main())
