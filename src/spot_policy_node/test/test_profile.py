"""Command profiles (core) and the profile player node over real DDS."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import rclpy
from geometry_msgs.msg import Twist
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Int64MultiArray, String
from std_srvs.srv import Trigger

from spot_policy.core import paths
from spot_policy.core.profile import ProfileError, load_profile, parse_profile
from spot_policy.ros.profile_player import ProfilePlayer

from ros_harness import Spinner, to_stamp, wait_until


def test_default_profile_is_the_issues_profile() -> None:
    p = load_profile("default", paths.config_dir() / "profiles")
    moving = [(s.name, s.cmd_vel, s.duration) for s in p.segments if s.moving]
    assert moving == [
        ("forward", (0.5, 0.0, 0.0), 5.0),
        ("turn", (0.0, 0.0, 1.0), 3.0),
        ("sidestep", (0.0, 0.3, 0.0), 3.0),
    ]
    assert p.segments[0].mode == "stand" and p.segments[0].duration == 2.0
    assert p.segments[-1].mode == "stop"
    assert p.at(0.0).name == "stand" and p.at(2.0).name == "forward" and p.at(p.duration) is None
    stand = load_profile("stand", paths.config_dir() / "profiles")
    assert stand.duration == 10.0 and not any(s.moving for s in stand.segments)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "is not a mapping"),
        ({"segments": []}, "has no segments"),
        ({"segments": [{"mode": "run", "duration": 1}]}, "segment 1 has mode 'run'; fix: use one of stand, walk, stop"),
        ({"segments": [{"mode": "walk", "duration": -1}]}, "segment 1 has duration -1.0"),
        ({"segments": [{"mode": "walk", "duration": 1, "cmd_vel": [1, 2]}]}, "segment 1 has cmd_vel [1, 2]"),
        ({"segments": [{"mode": "stand", "duration": 1, "cmd_vel": [1, 0, 0]}]}, "commands motion in mode stand"),
        ({"segments": [{"mode": "walk", "duration": 1, "speed": 2}]}, "unknown key(s) speed"),
        ({"name": "x", "segmnts": []}, "unknown key(s) segmnts"),
        ({"segments": [{"name": False, "mode": "stop", "duration": 1}]}, "has name False (YAML reads on/off"),
    ],
)
def test_bad_profiles_say_what_to_fix(data: object, message: str) -> None:
    with pytest.raises(ProfileError, match="; fix: ") as info:
        parse_profile(data, "p.yaml")
    assert message in str(info.value) and str(info.value).startswith("p.yaml: ")


def test_unknown_profile_lists_the_shipped_ones(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"no such profile; fix: .*\(acceptance, default, push, stand, walk\)"):
        load_profile("nope", paths.config_dir() / "profiles")
    bad = tmp_path / "bad.yaml"
    bad.write_text("segments: [\n")
    with pytest.raises(ProfileError, match="is not valid YAML"):
        load_profile(bad)


@pytest.mark.ros
def test_player_calls_services_and_publishes_cmd_vel_on_sim_time(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "name: p\nsegments:\n"
        "  - {name: up, mode: stand, duration: 0.5}\n"
        "  - {name: go, mode: walk, duration: 1.0, cmd_vel: [0.4, 0.0, 0.2]}\n"
        "  - {name: halt, mode: stop, duration: 0.2}\n"
    )
    rclpy.init()
    try:
        fake = rclpy.create_node("policy_node")
        calls: list[tuple[str, float]] = []
        sim_now = [0.0]
        refusals = [2]  # the first stand calls are refused, as when joint_states has not arrived yet

        def service(name: str):
            def handle(_req, res):
                if name == "stand" and refusals[0] > 0:
                    refusals[0] -= 1
                    res.success, res.message = False, "cannot stand: joint_states never received"
                    return res
                calls.append((name, sim_now[0]))
                res.success, res.message = True, name
                return res

            return handle

        for name in ("stand", "walk", "stop"):
            fake.create_service(Trigger, f"~/{name}", service(name))
        cmds: list[tuple[float, tuple[float, float, float]]] = []
        marks: list[dict] = []
        fake.create_subscription(
            Twist, "cmd_vel", lambda m: cmds.append((sim_now[0], (m.linear.x, m.linear.y, m.angular.z))), 50
        )
        latched = QoSProfile(
            depth=20, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        fake.create_subscription(String, "profile/segment", lambda m: marks.append(json.loads(m.data)), latched)
        clock_pub = fake.create_publisher(Clock, "clock", 10)
        player = ProfilePlayer(
            parameter_overrides=[Parameter("profile", value=str(profile)), Parameter("use_sim_time", value=True)]
        )
        spin = Spinner(fake, player)
        try:
            assert wait_until(lambda: clock_pub.get_subscription_count() > 0, 10)

            def run_clock() -> None:
                while not player.done and sim_now[0] < 5.0:
                    sim_now[0] = round(sim_now[0] + 0.01, 3)
                    clock_pub.publish(Clock(clock=to_stamp(sim_now[0])))
                    time.sleep(0.004)

            clock_thread = threading.Thread(target=run_clock)
            clock_thread.start()
            clock_thread.join(timeout=60)
        finally:
            spin.close()
        assert player.done and player.exit_code == 0
        assert [c[0] for c in calls] == ["stand", "walk", "stop"]
        t0 = calls[0][1]
        assert calls[1][1] - t0 == pytest.approx(0.5, abs=0.06) and calls[2][1] - t0 == pytest.approx(1.5, abs=0.06)
        walking = [c for t, c in cmds if t0 + 0.6 < t < t0 + 1.4]
        assert walking and all(c == (0.4, 0.0, 0.2) for c in walking)
        assert all(c == (0.0, 0.0, 0.0) for t, c in cmds if t < t0 + 0.45)
        assert [m["segment"] for m in marks] == ["up", "go", "halt", "end"]
        player.destroy_node()
        fake.destroy_node()
    finally:
        rclpy.shutdown()


def test_player_starts_only_once_the_recorder_has_subscribed(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("name: p\nsegments:\n  - {name: up, mode: stand, duration: 0.2}\n")

    def player_waiting_for(topic: str, timeout_s: float) -> ProfilePlayer:
        return ProfilePlayer(
            parameter_overrides=[
                Parameter("profile", value=str(profile)),
                Parameter("wait_for_subscribers", value=topic),
                Parameter("start_timeout_s", value=timeout_s),
            ]
        )

    rclpy.init()
    try:
        fake = rclpy.create_node("policy_node")
        calls: list[str] = []

        def stand(_req, res):
            calls.append("stand")
            res.success, res.message = True, "stand"
            return res

        fake.create_service(Trigger, "~/stand", stand)
        player = player_waiting_for("/policy_node/step", 30.0)
        spin = Spinner(fake, player)
        try:
            assert wait_until(lambda: player.clients_["stand"].service_is_ready(), 10)
            time.sleep(1.0)
            assert calls == [] and player.t0 is None  # the service is there, the recorder is not
            recorder = rclpy.create_node("recorder")
            recorder.create_subscription(Int64MultiArray, "/policy_node/step", lambda _m: None, 10)
            assert wait_until(lambda: calls == ["stand"], 10)
            recorder.destroy_node()
        finally:
            spin.close()
        player.destroy_node()
        # Nobody subscribes: it ends with exit 3, and never called the node.
        lonely = player_waiting_for("/nobody/listens", 1.0)
        spin = Spinner(fake, lonely)
        try:
            assert wait_until(lambda: lonely.done, 10)
        finally:
            spin.close()
        assert lonely.exit_code == 3 and calls == ["stand"]
        lonely.destroy_node()
        fake.destroy_node()
    finally:
        rclpy.shutdown()


@pytest.mark.ros
def test_player_waits_for_every_service_and_keeps_the_profiles_order_of_switches(tmp_path: Path) -> None:
    """The node answers walk slowly, while the profile moves on to stop and stand: those reach it in
    that order (sent concurrently, both would wait in the node's queue, and its executor takes its
    services in creation order: stand first). And nothing starts until every mode's service is there."""
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "name: p\nsegments:\n"
        "  - {name: up, mode: stand, duration: 0.3}\n"
        "  - {name: go, mode: walk, duration: 0.3, cmd_vel: [0.2, 0.0, 0.0]}\n"
        "  - {name: halt, mode: stop, duration: 0.3}\n"
        "  - {name: last, mode: stand, duration: 0.3}\n"
    )
    rclpy.init()
    try:
        fake = rclpy.create_node("policy_node")
        calls: list[str] = []
        sim_now = [0.0]

        def service(name: str):
            def handle(_req, res):
                calls.append(name)
                if name == "walk":
                    time.sleep(0.8)  # the profile goes on through halt and last meanwhile (0.6 sim s)
                res.success, res.message = True, name
                return res

            return handle

        for name in ("stand", "walk"):
            fake.create_service(Trigger, f"~/{name}", service(name))
        clock_pub = fake.create_publisher(Clock, "clock", 10)
        player = ProfilePlayer(
            parameter_overrides=[Parameter("profile", value=str(profile)), Parameter("use_sim_time", value=True)]
        )
        fake_spin, player_spin = Spinner(fake), Spinner(player)
        stop_clock = threading.Event()

        def run_clock() -> None:
            while not stop_clock.is_set() and not player.done and sim_now[0] < 30.0:
                sim_now[0] = round(sim_now[0] + 0.01, 3)
                clock_pub.publish(Clock(clock=to_stamp(sim_now[0])))
                time.sleep(0.004)

        clock_thread = threading.Thread(target=run_clock)
        try:
            assert wait_until(lambda: clock_pub.get_subscription_count() > 0, 10)
            clock_thread.start()
            assert wait_until(lambda: all(player.clients_[m].service_is_ready() for m in ("stand", "walk")), 10)
            time.sleep(1.0)
            assert calls == [] and player.t0 is None  # stand and walk are there, stop is not yet
            fake.create_service(Trigger, "~/stop", service("stop"))
            assert wait_until(lambda: player.done, 30)
        finally:
            stop_clock.set()
            if clock_thread.is_alive():
                clock_thread.join()
            player_spin.close()
            fake_spin.close()
        assert player.exit_code == 0
        assert calls == ["stand", "walk", "stop", "stand"]
        player.destroy_node()
        fake.destroy_node()
    finally:
        rclpy.shutdown()
