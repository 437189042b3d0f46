"""Robot-link sections of ``spot-policy bench``, each beside a baseline from the same run.

- ``robot``: the bridge core streaming joint commands to the Spot API emulator (a separate
  process, real TLS gRPC on loopback): state message received -> command handed to gRPC (client
  side), state acquired -> command received by the robot (both on the robot's clock, through the
  ``user_command_key`` the robot echoes), and the achieved command rate against the state stream's
  rate. The baseline: a bare unary gRPC round trip (GetRobotId) on the command stream's own channel,
  measured while the stream runs.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from spot_policy.core import paths
from spot_policy.core.stats import Rolling, summarize
from spot_policy_tools.bench.common import Row

ENV_USERNAME, ENV_PASSWORD = "BOSDYN_CLIENT_USERNAME", "BOSDYN_CLIENT_PASSWORD"


def start_emulator_process(tls_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, int, Path]:
    """The emulator as its own process (as a robot is); returns it, its port and its CA file."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spot_hw_bridge.emulator",
            "--port",
            "0",
            "--tls-dir",
            str(tls_dir),
            "--stop-on-stdin-eof",
        ],
        env=env,
        stdin=subprocess.PIPE,  # closes when this process ends, however it ends: the emulator then stops
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        found = re.search(r"emulator on [\d.]+:(\d+) ", line)
        if found:
            break
        seen.append(line.strip())
    else:
        proc.kill()
        raise RuntimeError(f"the emulator did not start: {' | '.join(seen[-5:])}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
    return proc, int(found.group(1)), tls_dir / "ca.pem"


def bench_robot(args: argparse.Namespace) -> list[Row]:
    from bosdyn.api import robot_id_pb2, robot_id_service_pb2_grpc
    from bosdyn.client.robot_command import RobotCommandStreamingClient

    from spot_hw_bridge.core.bridge import HwBridge, HwBridgeConfig, load_gains
    from spot_hw_bridge.core.conversion import SDK_ORDER
    from spot_hw_bridge.core.errors import Credentials

    gains = load_gains(args.policy, policies_dir=paths.config_dir() / "policies")
    username, password = "bench", secrets.token_urlsafe(12)
    env = {**os.environ, ENV_USERNAME: username, ENV_PASSWORD: password}
    seconds = max(2.0, float(args.seconds))
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # as the hw_bridge node runs: its state thread must not wait 5 ms for the GIL
    with tempfile.TemporaryDirectory(prefix="bench-robot-") as tmp:
        proc, port, ca = start_emulator_process(Path(tmp), env)
        core = HwBridge(
            HwBridgeConfig(hostname="127.0.0.1", port=port, ca_cert=str(ca), client_name="bench"),
            gains,
            Credentials(username, password),
        )
        feeding = threading.Event()
        feeding.set()

        def feed() -> None:  # the policy node's 50 Hz joint_command
            names = list(SDK_ORDER)
            while feeding.is_set():
                core.command(names, gains.default_pose.tolist())
                time.sleep(0.02)

        feeder = threading.Thread(target=feed, daemon=True)
        unary: list[float] = []
        try:
            core.start()
            feeder.start()
            deadline = time.monotonic() + 5.0
            while core.phase.value != "active" and time.monotonic() < deadline:
                time.sleep(0.01)
            if core.phase.value != "active":
                raise RuntimeError(f"joint control did not start: {core.reason}")
            time.sleep(0.5)  # warm-up
            core.state_to_send_s, core.loop_latency_s = Rolling(100_000), Rolling(100_000)
            stub = robot_id_service_pb2_grpc.RobotIdServiceStub(core.channel(RobotCommandStreamingClient))
            states0, sent0, t0 = core.stats["states"], core.stats["commands_sent"], time.monotonic()
            end = t0 + seconds
            while time.monotonic() < end:
                start = time.perf_counter()
                stub.GetRobotId(robot_id_pb2.RobotIdRequest(), timeout=1.0)
                unary.append(time.perf_counter() - start)
                time.sleep(0.005)
            elapsed = time.monotonic() - t0
            state_rate = (core.stats["states"] - states0) / elapsed
            command_rate = (core.stats["commands_sent"] - sent0) / elapsed
            send, loop = core.state_to_send_s, core.loop_latency_s
            phase = core.phase.value
        finally:
            feeding.clear()
            core.stop()
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            sys.setswitchinterval(switch)
    if phase != "active":
        raise RuntimeError(f"the bridge left joint control during the run: {core.reason}")
    u = summarize(np.array(unary) * 1e3)
    s = {"median": send.median * 1e3, "p99": send.p99 * 1e3, "n": len(send)}
    lp = {"median": loop.median * 1e3, "p99": loop.p99 * 1e3}
    return [
        Row(
            "robot",
            f"state message -> command sent, bridge core (gRPC stream, {s['n']} commands)",
            "ms",
            s["median"],
            s["p99"],
            "bare unary gRPC round trip, same channel",
            u["median"],
            u["p99"],
            "p99 <= 3 ms",
            s["p99"] <= 3.0,
        ),
        Row(
            "robot",
            "state acquired -> command received by the robot (robot clock, emulator on loopback)",
            "ms",
            lp["median"],
            lp["p99"],
            "bare unary gRPC round trip, same channel",
            u["median"],
            u["p99"],
            "median <= 2x baseline + 1 ms, p99 <= 10 ms",
            lp["median"] <= 2.0 * u["median"] + 1.0 and lp["p99"] <= 10.0,
        ),
        Row(
            "robot",
            "achieved joint command streaming rate (one per state message)",
            "Hz",
            command_rate,
            float("nan"),
            "the robot state stream's rate",
            state_rate,
            float("nan"),
            ">= 0.98x the state rate (~333 Hz)",
            command_rate >= 0.98 * state_rate,
        ),
    ]


SECTIONS = {"robot": bench_robot}
