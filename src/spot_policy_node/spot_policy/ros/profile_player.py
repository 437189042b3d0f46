"""``ros2 run spot_policy profile_player``: plays a command profile into the policy node.

The scripted stand-in for a person with a gamepad: at each segment it calls the policy node's
``~/stand``, ``~/walk`` or ``~/stop`` and publishes the segment's ``cmd_vel``, on the ROS clock
(so it follows simulated time). It marks each segment start on ``profile/segment`` (JSON in a
std_msgs/String) so a recording can be cut into segments afterwards.

``wait_for_subscribers`` (comma-separated topics): the profile starts only once each has a
subscriber, e.g. the policy node's ``~/step`` for a recorder (its step records are not latched:
a recorder that subscribed after the first stand would miss the run's first second).

A refused request ends the profile (exit 3) unless ``recover`` is set (the soak's long runs): then,
as an operator would, it resets a faulted policy node and the simulator, stands, waits
``recover_stand_s`` and goes on with the segment in force; each recovery is one warning line.
"""

from __future__ import annotations

import json
import sys
import time

from geometry_msgs.msg import Twist
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import Trigger

from spot_policy.core import contract, paths
from spot_policy.core.profile import END_MARKER, Profile, ProfileError, Segment, load_profile
from spot_policy.ros.node_main import run_node

SERVICE_FOR_MODE = {"stand": "stand", "walk": "walk", "stop": "stop"}
#: Wall seconds the player waits at the profile's end for its last mode switches to be answered.
DRAIN_S = 5.0


class ProfilePlayer(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("profile_player", **kwargs)
        params = {
            p.name: p.value
            for p in self.declare_parameters(
                "",
                [
                    ("profile", "default"),
                    ("policy_node", "policy_node"),
                    ("cmd_rate_hz", 20.0),
                    ("start_timeout_s", 60.0),
                    ("push_service", "/sim_bridge/push"),
                    ("recover", False),
                    ("sim_reset_service", "/sim_bridge/reset"),
                    ("recover_stand_s", 1.0),
                    ("wait_for_subscribers", ""),
                ],
            )
        }
        self.profile: Profile = load_profile(params["profile"], paths.config_dir() / "profiles")
        self.cmd_pub = self.create_publisher(Twist, contract.TOPIC_CMD_VEL, 10)
        latched = QoSProfile(
            depth=20, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.segment_pub = self.create_publisher(String, contract.TOPIC_PROFILE_SEGMENT, latched)
        node = str(params["policy_node"]).strip("/")
        self.clients_ = {m: self.create_client(Trigger, f"/{node}/{s}") for m, s in SERVICE_FOR_MODE.items()}
        self.push_client = self.create_client(Trigger, str(params["push_service"]))
        self.recover = bool(params["recover"])
        self.recover_stand_s = float(params["recover_stand_s"])
        self.reset_clients = [
            self.create_client(Trigger, f"/{node}/reset"),
            self.create_client(Trigger, str(params["sim_reset_service"])),
        ]
        self.recoveries = 0
        self._recovery: list[tuple[str, object]] = []  # steps left: ("call", client) / ("mode", m) / ("wait", t)
        self._recovery_since = 0.0
        self.start_timeout_s = float(params["start_timeout_s"])
        self.wait_for = [t.strip() for t in str(params["wait_for_subscribers"]).split(",") if t.strip()]
        self.t0: float | None = None
        self.index = -1
        self.done = False
        self.exit_code = 0
        self._pending = None
        self._queued: list[Segment] = []  # segments entered while a mode call was still unanswered
        self._ended_at: float | None = None  # wall time the profile's end was reached
        self._wall_start = time.monotonic()
        self.create_timer(1.0 / float(params["cmd_rate_hz"]), self._tick)
        self.get_logger().info(
            f"profile '{self.profile.name}': {len(self.profile.segments)} segments, {self.profile.duration:.1f} s"
        )

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _tick(self) -> None:
        if self.done:
            return
        if self.t0 is None:
            if self._pending is None:
                self._try_start()
            return
        t = self._now() - self.t0
        segment = self.profile.at(t)
        if segment is None:
            self._finish(t)
            return
        index = self.profile.segments.index(segment)
        # The segment's command goes out at once, also while its mode switch is still being
        # answered: a scripted command arrives when the script says, like a gamepad's.
        self._publish_cmd(segment.cmd_vel if segment.mode == "walk" else (0.0, 0.0, 0.0))
        if index != self.index:
            self.index = index
            self._enter(segment)
        elif self._recovery and self._pending is None:
            self._recover_step(segment)

    def _finish(self, t: float) -> None:
        """The profile's end: done once its last mode switches have been answered (a switch waits
        for the one before it), or after :data:`DRAIN_S` without an answer."""
        if self._ended_at is None:
            self._ended_at = time.monotonic()
            self._mark(END_MARKER, len(self.profile.segments))
            self.get_logger().info(f"profile done at t={t:.2f} s")
        if self._pending is None and not self._queued:
            self.done = True
        elif time.monotonic() - self._ended_at > DRAIN_S:
            left = [s.mode for s in self._queued]
            self.get_logger().warning(f"no answer to the last mode switch within {DRAIN_S:.0f} s; not sent: {left}")
            self.done = True

    def _try_start(self) -> None:
        """Start once every ``wait_for_subscribers`` topic has a subscriber and the policy node accepts
        the first segment's mode (it needs fresh inputs)."""
        missing = [t for t in self.wait_for if self.count_subscribers(t) == 0]
        # Every service the profile will call is discovered before it starts: a request on one not
        # yet matched can arrive after the next segment's, and the node then switches out of order.
        unready = [c.srv_name for c in self._clients_needed() if not c.service_is_ready()]
        if time.monotonic() - self._wall_start > self.start_timeout_s:
            if missing:
                self._abort(f"nothing subscribed to {', '.join(missing)} within {self.start_timeout_s:.0f} s "
                            "(wait_for_subscribers): did the recorder start?")  # fmt: skip
            elif unready:
                self._abort(f"service(s) {', '.join(unready)} not available within {self.start_timeout_s:.0f} s: "
                            "is the policy node (and, for a push, the simulator) running?")  # fmt: skip
            else:
                self._abort(f"the policy node did not accept '{self.profile.segments[0].mode}' within "
                            f"{self.start_timeout_s:.0f} s: is the bridge publishing joint_states?")  # fmt: skip
            return
        if missing or unready:
            return
        self._call(self.profile.segments[0], on_ok=self._started, retry=True)

    def _clients_needed(self) -> list:
        needed = [self.clients_[m] for m in dict.fromkeys(s.mode for s in self.profile.segments)]
        return needed + ([self.push_client] if any(s.push for s in self.profile.segments) else [])

    def _started(self) -> None:
        self.t0 = self._now()
        self.index = 0
        first = self.profile.segments[0]
        self._mark(first.name, 0)
        self.get_logger().info(f"segment 1/{len(self.profile.segments)} '{first.name}': {first.mode}")

    def _enter(self, segment: Segment) -> None:
        self._mark(segment.name, self.index)
        self.get_logger().info(
            f"segment {self.index + 1}/{len(self.profile.segments)} '{segment.name}': {segment.mode} "
            f"cmd_vel {list(segment.cmd_vel)}"
        )
        if self._recovery:  # the recovery ends in this segment's mode
            self._recovery[-1] = ("mode", segment.mode)
        elif self._pending is not None:  # mode switches reach the node in the profile's order
            self._queued.append(segment)
        else:
            self._call(segment, on_ok=lambda: None, retry=False)
        if segment.push:
            self._push(segment)

    def _call(self, segment: Segment, on_ok, retry: bool) -> None:
        future = self.clients_[segment.mode].call_async(Trigger.Request())
        self._pending = future

        def done(f) -> None:
            self._pending = None
            result = f.result()
            if result is not None and result.success:
                on_ok()
            elif not retry:
                message = f"policy node refused {segment.mode} in segment '{segment.name}': " + (
                    result.message if result else "no answer"
                )
                self._start_recovery(message) if self.recover else self._abort(message)
            if self._queued and not self._recovery and not self.done:
                self._call(self._queued.pop(0), on_ok=lambda: None, retry=False)

        future.add_done_callback(done)

    def _start_recovery(self, message: str) -> None:
        """Reset the node (and the simulator) if it is in fault, stand, then the segment's mode."""
        self.recoveries += 1
        faulted = "in fault" in message
        self.get_logger().warning(
            f"recovery {self.recoveries}: {message}; "
            + ("resetting the policy node and the simulator, then stand" if faulted else "asking again")
        )
        self._queued.clear()  # the recovery ends in the current segment's mode
        mode = self.profile.segments[self.index].mode
        calls = [("call", c) for c in self.reset_clients] + [("mode", "stand"), ("wait", self.recover_stand_s)]
        self._recovery = [*(calls if faulted and mode != "stop" else []), ("mode", mode)]
        self._recovery_since = time.monotonic()

    def _recover_step(self, segment: Segment) -> None:
        if time.monotonic() - self._recovery_since > self.start_timeout_s:
            self._abort(f"recovery {self.recoveries} did not succeed within {self.start_timeout_s:.0f} s")
            return
        kind, what = self._recovery[0]
        if kind == "wait":
            self._recovery[0] = ("until", self._now() + float(what))
            return
        if kind == "until":
            if self._now() >= float(what):
                self._recovery.pop(0)
            return
        client = what if kind == "call" else self.clients_[str(what)]
        if not client.service_is_ready():
            if kind == "call":  # no such service here (the robot has no simulator to reset)
                self._recovery.pop(0)
            return
        step = self._recovery[0]
        self._pending = client.call_async(Trigger.Request())

        def done(f) -> None:
            self._pending = None
            result = f.result()
            # A new segment may have replaced the mode step meanwhile: then that one is asked next.
            if (kind == "call" or (result is not None and result.success)) and self._recovery[:1] == [step]:
                self._recovery.pop(0)
                if not self._recovery:
                    self.get_logger().info(f"recovery {self.recoveries}: back in '{segment.name}'")

        self._pending.add_done_callback(done)

    def _push(self, segment: Segment) -> None:
        """Kick the base through the simulator's ~/push (its push_velocity parameter sets the kick)."""
        if not self.push_client.service_is_ready():
            self._abort(f"segment '{segment.name}' asks for a push but {self.push_client.srv_name} is not available")
            return
        self.push_client.call_async(Trigger.Request()).add_done_callback(
            lambda f: self.get_logger().info(f"push: {f.result().message if f.result() else 'no answer'}")
        )

    def _mark(self, name: str, index: int) -> None:
        self.segment_pub.publish(String(data=json.dumps({"segment": name, "index": index, "t": self._now()})))

    def _publish_cmd(self, cmd: tuple[float, float, float]) -> None:
        msg = Twist()
        msg.linear.x, msg.linear.y, msg.angular.z = cmd
        self.cmd_pub.publish(msg)

    def _abort(self, message: str) -> None:
        self.get_logger().error(message)
        self.exit_code = 3
        self.done = True


def main(args: list[str] | None = None) -> int:
    return run_node(
        "profile_player",
        ProfilePlayer,
        args,
        config_errors=(ProfileError, ValueError),
        until=lambda node: node.done,
        exit_code=lambda node: node.exit_code,
    )


if __name__ == "__main__":
    sys.exit(main())
