"""Which nodes a bring-up starts, with which parameter files: the one description of it.

The launch files turn these specs into launch_ros ``Node`` actions; ``spot-policy sim`` (and the
robot job) turns the very same specs into processes, for machines without ``ros2 launch``. So the
executables, node names and parameter files cannot drift apart between the two.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from spot_policy.core import paths


@dataclass(frozen=True)
class NodeSpec:
    package: str
    executable: str
    name: str
    param_files: tuple[str, ...] = ()  # names in the spot_policy config folder
    overrides: dict[str, Any] = field(default_factory=dict)
    #: The bring-up cannot run without it: when it exits, everything stops (a launch with status 1).
    required: bool = False

    def param_paths(self, config_dir: Path | None = None) -> list[Path]:
        base = config_dir or paths.config_dir()
        return [base / f for f in self.param_files]

    def command(self, config_dir: Path | None = None) -> list[str]:
        """argv to start this node as a process (the executable ``ros2 run`` would start)."""
        exe = find_executable(self.package, self.executable)
        if exe is None:
            raise FileNotFoundError(
                f"executable '{self.executable}' of package {self.package} not found: run scripts/setup "
                "(or source your colcon workspace's install/setup.bash)"
            )
        argv = [exe, "--ros-args", "-r", f"__node:={self.name}"]
        for path in self.param_paths(config_dir):
            argv += ["--params-file", str(path)]
        for key, value in self.overrides.items():
            argv += ["-p", f"{key}:={_param_text(value)}"]
        return argv


def find_executable(package: str, executable: str) -> str | None:
    """``<prefix>/lib/<package>/<executable>`` as ``ros2 run`` finds it: this environment's prefix
    (the .venv set-up installs the nodes there too), then every prefix of a sourced workspace;
    else the PATH."""
    prefixes = [sys.prefix, *filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))]
    for prefix in prefixes:
        candidate = Path(prefix) / "lib" / package / executable
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(executable)


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_text(v) for v in value) + "]"
    return str(value)


def policy_node(policy: str, trigger: str, sim_time: bool, extra_params: dict[str, Any] | None = None) -> NodeSpec:
    return NodeSpec(
        "spot_policy",
        "policy_node",
        "policy_node",
        ("policy_node.yaml",),
        {"policy": policy, "trigger": trigger, "use_sim_time": sim_time, **(extra_params or {})},
        required=True,
    )


def sim_nodes(
    policy: str = "spot_flat_mjx",
    backend: str = "mujoco",
    realtime: bool = True,
    gui: bool = False,
    teleop: bool = True,
    joy: bool = False,
    extra_bridge_params: dict[str, Any] | None = None,
    extra_policy_params: dict[str, Any] | None = None,
) -> list[NodeSpec]:
    """The simulation bring-up: bridge + policy node (+ teleop, + joy_node)."""
    nodes = [
        NodeSpec(
            "spot_sim_bridge",
            "sim_bridge",
            "sim_bridge",
            ("sim_bridge.yaml",),
            {
                "policy": policy,
                "backend": backend,
                "mode": "realtime" if realtime else "lockstep",
                "gui": gui,
                "use_sim_time": False,  # the bridge is the clock
                **(extra_bridge_params or {}),
            },
            required=True,
        ),
        # Lock-stepped physics needs one policy step per state message.
        policy_node(policy, "timer" if realtime else "input", True, extra_policy_params),
    ]
    if teleop:
        nodes.append(teleop_node(sim_time=True))
    if joy:
        nodes.append(joy_node())
    return nodes


def teleop_node(sim_time: bool) -> NodeSpec:
    return NodeSpec("spot_policy", "teleop", "teleop", ("teleop.yaml",), {"use_sim_time": sim_time})


def joy_node() -> NodeSpec:
    """The ``joy`` package's gamepad driver (a ROS install has it; pip environments do not)."""
    return NodeSpec("joy", "joy_node", "joy_node", (), {"autorepeat_rate": 20.0})


def live_view(
    port: int = 8765, host: str = "127.0.0.1", accept_cmd_vel: bool = True, extra: dict[str, Any] | None = None
) -> NodeSpec:
    """The Foxglove live view (spot_policy.ros.live_view_node): serves the robot to a browser."""
    params: dict[str, Any] = {"host": host, "port": port, "accept_cmd_vel": accept_cmd_vel, **(extra or {})}
    return NodeSpec("spot_policy", "live_view", "live_view", (), params)


def gamepad(device: str = "", layout: str = "") -> NodeSpec:
    """A Linux gamepad read from evdev as sensor_msgs/Joy (joy_node's layout; no ROS installation needed)."""
    return NodeSpec("spot_policy", "gamepad", "gamepad", (), {"device": device, "layout": layout})


def keyboard_teleop(publish_rate_hz: float = 20.0) -> NodeSpec:
    """Drive from a terminal (needs the terminal: run it in the foreground)."""
    return NodeSpec("spot_policy", "keyboard_teleop", "keyboard_teleop", (), {"publish_rate_hz": publish_rate_hz})


#: The policy node's step records: not latched, so a recording must have subscribed before the first.
RECORDED_STEPS_TOPIC = "/policy_node/step"


def profile_player(profile: str, sim_time: bool = True, recover: bool = False, recorded: bool = False) -> NodeSpec:
    """``recover``: a refused request resets and goes on instead of ending the profile (soak runs).
    ``recorded``: start the profile only once the recorder has subscribed to the node's step records."""
    params: dict[str, Any] = {"profile": profile, "use_sim_time": sim_time, **({"recover": True} if recover else {})}
    if recorded:
        params["wait_for_subscribers"] = RECORDED_STEPS_TOPIC
    return NodeSpec("spot_policy", "profile_player", "profile_player", (), params)


def awaiting_recorder(specs: Sequence[NodeSpec]) -> list[NodeSpec]:
    """``specs`` with their policy node holding its first stand or walk until a recorder reads its
    debug stream (``start_after_debug_readers``): it is not latched, so a recorder whose subscription
    matched late would miss the run's first steps, and replay needs every one."""
    waits = {"start_after_debug_readers": 1}
    return [replace(s, overrides={**s.overrides, **waits}) if s.executable == "policy_node" else s for s in specs]


def recorded(specs: Sequence[NodeSpec], out: Path, sim_time: bool = True, lockstep: bool = False) -> list[NodeSpec]:
    """A recorder (started first) and ``specs`` :func:`awaiting_recorder`."""
    return [recorder(out, sim_time, lockstep), *awaiting_recorder(specs)]


def recorder(out: Path, sim_time: bool = True, lockstep: bool = False) -> NodeSpec:
    """``lockstep``: the sim bridge publishes its state reliably with history (LOCKSTEP_STATE_QOS);
    the recorder then reads it so too and loses nothing, not even what came before it matched."""
    params = {"out": str(out), "use_sim_time": sim_time, "lockstep": lockstep}
    return NodeSpec("spot_policy", "recorder", "recorder", (), params)


#: What ``ros2 bag record -s mcap`` needs besides ``ros2`` itself (packages in the ament index).
ROSBAG2_PACKAGES = ("ros2bag", "rosbag2_storage_mcap")


def installed_ros_packages(names: Sequence[str]) -> list[str]:
    """Which of ``names`` a sourced ROS environment has (ament index of every AMENT_PREFIX_PATH prefix)."""
    prefixes = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    index = Path("share") / "ament_index" / "resource_index" / "packages"
    return [n for n in names if any((prefix / index / n).is_file() for prefix in prefixes)]


def bag_record_command(out: str | Path, sim_time: bool = True) -> list[str] | None:
    """argv of ``ros2 bag record`` (MCAP) for the recorder's topics, or None where rosbag2 with its
    MCAP plugin is not installed (``ros2`` alone is not enough: without rosbag2 it has no ``bag``).

    ``record:=true`` prefers rosbag2 (it adapts its QoS to each publisher, as the in-project
    recorder does) and falls back to :func:`recorder`: both record the same topics.
    """
    ros2 = shutil.which("ros2")
    if ros2 is None or len(installed_ros_packages(ROSBAG2_PACKAGES)) < len(ROSBAG2_PACKAGES):
        return None
    from spot_policy.ros.recorder_node import DEFAULT_TOPICS  # rclpy: only where ros2 exists

    topics = ["/" + entry.split(":")[0].lstrip("/") for entry in DEFAULT_TOPICS]
    return [ros2, "bag", "record", "-s", "mcap", "-o", str(out), *(["--use-sim-time"] if sim_time else []), *topics]


def robot_nodes(
    policy: str = "spot_flat_mjx",
    hostname: str = "",
    teleop: bool = True,
    joy: bool = False,
    extra_bridge_params: dict[str, Any] | None = None,
) -> list[NodeSpec]:
    """The robot bring-up: hw bridge + policy node (+ teleop, + joy_node), all on wall time.

    The policy node is the simulation's spec with the timer trigger: the robot streams state at
    its own rate, the policy steps at its control rate. ``hostname`` empty: the bridge's
    parameter file, then ``$SPOT_IP``.
    """
    bridge: dict[str, Any] = {"policy": policy, "use_sim_time": False}
    if hostname:
        bridge["hostname"] = hostname
    bridge.update(extra_bridge_params or {})
    nodes = [
        NodeSpec("spot_hw_bridge", "hw_bridge", "hw_bridge", ("hw_bridge.yaml",), bridge, required=True),
        policy_node(policy, "timer", False),
    ]
    if teleop:
        nodes.append(teleop_node(sim_time=False))
    if joy:
        nodes.append(joy_node())
    return nodes
