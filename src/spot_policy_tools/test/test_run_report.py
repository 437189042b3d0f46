"""The run report on synthetic bags whose numbers are known by construction.

Profile (sim time, starting at 10 s, settle 0.5 s): stand 1 s, forward 2 s at 0.5 m/s, turn 2 s at
1 rad/s, side 1 s at 0.3 m/s, stop 0.5 s. Odometry at 100 Hz; in each scored window the achieved
velocity alternates between two values (so mean and RMS differ), in the settle time it is zero (so
scoring it would change the mean).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.serialization import serialize_message
from std_msgs.msg import String

from spot_policy.core.profile import Profile, parse_profile
from spot_policy.ros.bag_recorder import BagRecorder
from spot_policy_tools.run_report import (
    PLOT_NAME,
    SUMMARY_NAME,
    RunReportError,
    build_report,
    read_run,
    write_run_report,
)

T0_NS = 10_000_000_000
PROFILE: Profile = parse_profile(
    {
        "name": "synthetic",
        "settle_s": 0.5,
        "segments": [
            {"name": "stand", "mode": "stand", "duration": 1.0},
            {"name": "forward", "mode": "walk", "duration": 2.0, "cmd_vel": [0.5, 0.0, 0.0]},
            {"name": "turn", "mode": "walk", "duration": 2.0, "cmd_vel": [0.0, 0.0, 1.0]},
            {"name": "side", "mode": "walk", "duration": 1.0, "cmd_vel": [0.0, 0.3, 0.0]},
            {"name": "stop", "mode": "stop", "duration": 0.5},
        ],
    }
)
ROLL_70 = (math.sin(math.radians(35)), 0.0, 0.0, math.cos(math.radians(35)))  # xyzw: 70 deg roll


def achieved(seg: str, k: int, turn_wz: float) -> tuple[float, float, float]:
    """The scored-window twist of sample ``k`` (alternating between two values)."""
    odd = k % 2
    if seg == "forward":
        return (0.5 if odd else 0.4, 0.02, 0.05)  # mean (0.45, 0.02, 0.05)
    if seg == "turn":
        return (0.0, 0.0, turn_wz + (0.05 if odd else -0.05))  # mean turn_wz
    if seg == "side":
        return (0.0, 0.3, 0.0)
    return (0.0, 0.0, 0.0)


def make_bag(
    path: Path,
    *,
    turn_wz: float = 0.9,
    fall_at_ns: int | None = None,
    tilt_ns: tuple[int, int] | None = None,
    markers: bool = True,
    skip_marker: str = "",
    odom: bool = True,
) -> Path:
    with BagRecorder(path) as bag:
        for seg in PROFILE.segments:
            start_ns = T0_NS + round(seg.start * 1e9)
            if markers and seg.name != skip_marker:
                text = json.dumps({"segment": seg.name, "index": PROFILE.segments.index(seg), "t": start_ns * 1e-9})
                bag.write("/profile/segment", "std_msgs/msg/String", serialize_message(String(data=text)), start_ns)
            for j in range(round(seg.duration * 20)):  # cmd_vel at 20 Hz, as the profile player
                msg = Twist()
                msg.linear.x, msg.linear.y, msg.angular.z = seg.cmd_vel
                bag.write("/cmd_vel", "geometry_msgs/msg/Twist", serialize_message(msg), start_ns + j * 50_000_000)
        for k in range(-50, round(PROFILE.duration * 100) + 50):  # 0.5 s either side of the profile
            t_ns = T0_NS + k * 10_000_000
            seg = PROFILE.at(k / 100)
            msg = Odometry(child_frame_id="base_link")
            msg.header.frame_id = "odom"
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t_ns, 1_000_000_000)
            msg.pose.pose.position.z = 0.2 if fall_at_ns is not None and t_ns >= fall_at_ns else 0.5
            q = ROLL_70 if tilt_ns and tilt_ns[0] <= t_ns < tilt_ns[1] else (0.0, 0.0, 0.0, 1.0)
            o = msg.pose.pose.orientation
            o.x, o.y, o.z, o.w = q
            if seg is not None and k / 100 >= seg.start + PROFILE.settle_s - 1e-9:
                v = achieved(seg.name, k, turn_wz)
                msg.twist.twist.linear.x, msg.twist.twist.linear.y, msg.twist.twist.angular.z = v
            if odom:
                bag.write("/odom", "nav_msgs/msg/Odometry", serialize_message(msg), t_ns)
    return path


@pytest.fixture(scope="module")
def good_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bag(tmp_path_factory.mktemp("good") / "bag")


def test_per_segment_numbers(good_bag: Path) -> None:
    report = build_report(good_bag, PROFILE)
    assert report.alignment == "profile/segment" and report.t0 == 10.0 and report.notes == ()
    stand, forward, turn, side, stop = report.segments
    assert (forward.start_s, forward.scored_from_s, forward.end_s) == (1.0, 1.5, 3.0)
    assert forward.samples == 150  # [11.5, 13.0) at 100 Hz
    assert forward.commanded == (0.5, 0.0, 0.0)
    assert forward.achieved == pytest.approx((0.45, 0.02, 0.05), abs=1e-12)
    assert forward.cmd_vel_recorded == pytest.approx((0.5, 0.0, 0.0))
    assert forward.error_vxy_m_s == pytest.approx(math.hypot(0.05, 0.02), abs=1e-12)
    assert forward.error_wz_rad_s == pytest.approx(0.05, abs=1e-12)
    assert forward.rms_vxy_m_s == pytest.approx(math.sqrt((0.1**2 + 0.02**2 + 0.02**2) / 2), abs=1e-12)
    assert forward.rms_wz_rad_s == pytest.approx(0.05, abs=1e-12)
    assert turn.achieved == pytest.approx((0.0, 0.0, 0.9), abs=1e-12)
    assert turn.error_wz_rad_s == pytest.approx(0.1, abs=1e-12) and turn.rms_wz_rad_s == pytest.approx(
        math.sqrt((0.05**2 + 0.15**2) / 2), abs=1e-12
    )
    assert side.error_vxy_m_s == pytest.approx(0.0, abs=1e-12)
    assert [s.passed for s in report.segments] == [None, True, True, True, None]
    assert [s.moving for s in report.segments] == [False, True, True, True, False]
    assert not report.fell and report.min_base_height_m == 0.5 and report.passed
    assert stand.achieved == (0.0, 0.0, 0.0) and stop.end_s == 6.5


def test_thresholds_and_falls(tmp_path: Path) -> None:
    bag = make_bag(
        tmp_path / "bag",
        turn_wz=0.8,
        fall_at_ns=T0_NS + 5_600_000_000,  # in side, and stays down through stop
        tilt_ns=(T0_NS + 200_000_000, T0_NS + 250_000_000),  # 70 deg roll during stand, height fine
    )
    report = build_report(bag, PROFILE)
    stand, forward, turn, side, stop = report.segments
    assert (stand.fell, stand.fell_at_s, stand.min_base_height_m) == (True, pytest.approx(0.2), 0.5)
    assert forward.passed and not forward.fell
    assert turn.error_wz_rad_s == pytest.approx(0.2) and turn.passed is False and not turn.fell
    assert (side.fell, side.fell_at_s, side.min_base_height_m, side.passed) == (True, pytest.approx(5.6), 0.2, False)
    assert side.error_vxy_m_s == pytest.approx(0.0, abs=1e-12)  # tracked fine: failed by the fall alone
    assert stop.fell and stop.passed is None
    assert report.fell and report.min_base_height_m == 0.2 and not report.passed
    lenient = build_report(bag, PROFILE, max_wz_error=0.25, require_no_fall=False)
    assert lenient.passed and lenient.segments[3].passed


def test_a_fall_in_stop_does_not_fail_the_run(tmp_path: Path) -> None:
    """In stop the policy is off; the bridge's safe behaviour may go limp and let the robot sink."""
    report = build_report(make_bag(tmp_path / "bag", fall_at_ns=T0_NS + 6_200_000_000), PROFILE)
    assert report.segments[-1].fell and report.fell and report.passed


def test_alignment_without_markers(tmp_path: Path, good_bag: Path) -> None:
    with_markers = build_report(good_bag, PROFILE)
    partial = build_report(make_bag(tmp_path / "partial", skip_marker="turn"), PROFILE)
    assert partial.alignment == "profile/segment"  # turn continues from forward by the profile
    none = build_report(make_bag(tmp_path / "none", markers=False), PROFILE)
    assert none.alignment == "cmd_vel" and none.notes
    for report in (partial, none):
        for got, want in zip(report.segments, with_markers.segments, strict=True):
            assert (got.samples, got.passed, got.fell) == (want.samples, want.passed, want.fell)
            assert (got.start_s, got.end_s) == (pytest.approx(want.start_s), pytest.approx(want.end_s))
            assert got.achieved == pytest.approx(want.achieved)
            assert got.error_vxy_m_s == pytest.approx(want.error_vxy_m_s, abs=1e-12)
            assert got.error_wz_rad_s == pytest.approx(want.error_wz_rad_s, abs=1e-12)


def test_writes_summary_and_plot(good_bag: Path, tmp_path: Path) -> None:
    report = write_run_report(good_bag, PROFILE, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / SUMMARY_NAME).read_text())
    assert summary["passed"] is True and summary["profile"] == "synthetic" and summary["settle_s"] == 0.5
    assert "tracking_error" in summary["definitions"] and summary["thresholds"]["tracking_error_vxy_m_s"] == 0.10
    forward = summary["segments"][1]
    assert forward["achieved"]["vx"] == pytest.approx(0.45)
    assert set(forward["tracking_error"]) == {"vxy_m_s", "wz_rad_s"} and forward["fell"] is False
    assert summary["segments"][0]["passed"] is None
    png = (tmp_path / "run" / PLOT_NAME).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert report.passed


def test_clear_errors(tmp_path: Path, good_bag: Path) -> None:
    with pytest.raises(RunReportError, match="no such bag"):
        read_run(tmp_path / "missing")
    no_odom = make_bag(tmp_path / "no_odom", odom=False)
    with pytest.raises(RunReportError, match=r"has no odom topic .*it has: /cmd_vel, /profile/segment.*fix"):
        build_report(no_odom, PROFILE)
    other = parse_profile({"segments": [{"name": "walk", "mode": "walk", "duration": 1.0, "cmd_vel": [1, 0, 0]}]})
    with pytest.raises(RunReportError, match="not in profile"):
        build_report(good_bag, other)
    with BagRecorder(tmp_path / "wrong_type") as bag:
        bag.write("/odom", "geometry_msgs/msg/Twist", serialize_message(Twist()), 1)
    with pytest.raises(RunReportError, match="expected nav_msgs/msg/Odometry"):
        read_run(tmp_path / "wrong_type")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metadata.yaml").write_text("not: a bag\n")
    with pytest.raises(RunReportError, match="cannot read the bag"):
        read_run(tmp_path / "broken")
