"""The evaluation's pure logic, without DDS: scenarios, metrics, statistics, verdicts, comparisons, report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from spot_policy.core import paths
from spot_policy_tools.evaluate import compare, report, stats, verdict
from spot_policy_tools.evaluate.driver import timeline
from spot_policy_tools.evaluate.metrics import TrialContext, TrialData, compute
from spot_policy_tools.evaluate.scenario import CommandSegment, ScenarioError, load_suite, parse_suite, trial_seed

SCENARIOS = paths.config_dir() / "scenarios"
RANGES = {"vx": (-1.0, 2.0), "vy": (-1.0, 1.0), "wz": (-1.5, 1.5)}


def minimal(**scenario) -> dict:
    base = {"name": "s", "commands": [{"name": "w", "mode": "walk", "duration": 2.0, "cmd_vel": [0.5, 0, 0]}]}
    return {"suite": "t", "scenarios": [{**base, **scenario}]}


@pytest.mark.parametrize("suite", ["quick", "standard", "robustness"])
def test_shipped_suites_load(suite: str) -> None:
    s = load_suite(suite, SCENARIOS)
    assert s.scenarios and len({x.name for x in s.scenarios}) == len(s.scenarios)
    groups = {x.group for x in s.scenarios}
    if suite == "standard":  # the coverage list
        assert groups == {"tracking", "terrain", "body", "push", "sensing", "safety"}


def test_standard_covers_every_condition() -> None:
    s = load_suite("standard", SCENARIOS)
    terrain = {x.environment["terrain"]["kind"] for x in s.scenarios}
    assert terrain >= {"flat", "slope", "rough", "steps"}
    slopes = [x.environment["terrain"]["slope_deg"] for x in s.scenarios]
    assert min(slopes) <= -10 and max(slopes) >= 10
    frictions = [x.environment["friction"] for x in s.scenarios]
    assert min(frictions) <= 0.3 and max(frictions) >= 1.2
    assert max(x.environment["payload_kg"] for x in s.scenarios) >= 10
    assert any(any(x.environment["payload_offset_m"]) for x in s.scenarios)
    scales = [x.environment[k] for x in s.scenarios for k in ("kp_scale", "torque_limit_scale")]
    assert min(scales) <= 0.8 and max(scales) >= 1.2
    directions = {p.direction_deg % 360 for x in s.scenarios for p in x.pushes}
    assert len(directions) >= 8
    standing = [x for x in s.scenarios if x.pushes and all(c.cmd == (0, 0, 0) for c in x.commands)]
    assert standing, "pushes while standing"
    assert any(x.sensing["isaaclab_noise"] for x in s.scenarios)
    assert any(any(x.sensing["imu_gyro_bias"]) for x in s.scenarios)
    assert any(x.sensing["velocity_drift"] > 0 for x in s.scenarios)
    assert max(x.sensing["latency_ms"] for x in s.scenarios) >= 40
    assert max(x.sensing["command_latency_ms"] for x in s.scenarios) >= 40
    assert any(x.sensing["drop_probability"] > 0 for x in s.scenarios)
    kinds = {(f.kind, f.topic) for x in s.scenarios for f in x.faults}
    assert ("nan", "joint_states") in kinds and any(k == "stale" for k, _ in kinds)
    assert any(x.grid for x in s.scenarios)


@pytest.mark.parametrize(
    ("change", "key", "fix"),
    [
        ({"environment": {"friction": -1}}, "'environment.friction' is -1", "0.05..2"),
        ({"environment": {"frction": 0.5}}, "'environment.frction' is not a known key", "friction"),
        ({"faults": [{"at_s": 1, "kind": "fire"}]}, "'faults[0].kind' is 'fire'", "nan, stale"),
        ({"trials": 0}, "'trials' is 0", "1..100"),
        ({"group": "misc"}, "'group' is 'misc'", "tracking"),
        ({"thresholds": {"speed_min": 1}}, "'thresholds.speed_min' is not a known key", "survival_rate_min"),
        ({"pushes": [{"at_s": 50, "speed_m_s": 1}]}, "'pushes[0].at_s' is 50", "0..2"),
        ({"command_grid": {"vx": [2.0]}}, "'command_grid.vx' has [2.0]", "fractions"),
    ],
)
def test_malformed_scenarios_get_one_line(change: dict, key: str, fix: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_suite(minimal(**change), "suite.yaml")
    text = str(err.value)
    assert "\n" not in text and text.startswith("suite.yaml: scenarios[0] (s): ")
    assert key in text and "fix:" in text and fix in text.split("fix:")[1]


def test_malformed_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("suite: x\nscenarios: [\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml: is not valid YAML .*; fix:"):
        load_suite(bad)
    with pytest.raises(ScenarioError, match=r"no such suite; fix: .*quick"):
        load_suite("nope", SCENARIOS)


def test_sweep_grid_and_seeds() -> None:
    data = minimal(sweep={"key": "environment.friction", "values": [0.3, 0.8]})
    data["scenarios"].append(
        {"name": "g", "command_grid": {"vx": [-0.5, 0.5], "vy": [0], "wz": [0, 1.0], "each_s": 2}, "trials": 2}
    )
    suite = parse_suite(data)
    names = [s.name for s in suite.scenarios]
    assert names == ["s[friction=0.3]", "s[friction=0.8]", "g"]
    assert suite.scenarios[0].curve == ("environment.friction", 0.3)
    assert suite.scenarios[1].environment["friction"] == 0.8
    grid = suite.scenario("g").segments(RANGES)
    assert [c.cmd for c in grid] == [(-0.5, 0, 0), (-0.5, 0, 1.5), (1.0, 0, 0), (1.0, 0, 1.5)]  # fractions of ranges
    assert grid[-1].end_s == 8.0 and all(c.grid for c in grid)
    assert trial_seed(1, "g", 0) == trial_seed(1, "g", 0) != trial_seed(1, "g", 1)


def test_null_threshold_is_not_judged() -> None:
    data = minimal(thresholds={"tilt_max_deg": None})
    data["thresholds"] = {"tilt_max_deg": 25.0, "survival_rate_min": 1.0}
    assert parse_suite(data).scenarios[0].thresholds == {"survival_rate_min": 1.0}


def test_wilson_interval() -> None:
    low, high = stats.wilson_interval(10, 10)
    assert high == 1.0 and 0.69 < low < 0.73  # 10 of 10 proves at least ~72 %
    low, high = stats.wilson_interval(0, 3)
    assert low == 0.0 and 0.55 < high < 0.58
    low, high = stats.wilson_interval(5, 10)
    assert low == pytest.approx(1 - high)
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)


def test_differs_only_beyond_the_spread() -> None:
    a = stats.summarize([0.10, 0.12, 0.11])
    assert not stats.differs(a, stats.summarize([0.11, 0.13, 0.12]), 0.01)
    assert stats.differs(a, stats.summarize([0.30, 0.32, 0.31]), 0.01)
    assert not stats.differs(stats.summarize([0.1]), stats.summarize([0.105]), 0.01)  # one trial: the resolution


def _trial_data(n: int = 301, vx: float = 0.5, fall_at: int | None = None) -> TrialData:
    t = np.arange(n) * 0.02
    pos = np.zeros((n, 3))
    pos[:, 0] = vx * t
    pos[:, 2] = 0.45
    quat = np.tile([0.0, 0.0, 0.0, 1.0], (n, 1))
    if fall_at is not None:
        pos[fall_at:, 2] = 0.1
        quat[fall_at:] = [np.sin(np.pi / 4), 0, 0, np.cos(np.pi / 4)]  # rolled 90 deg
    lin = np.zeros((n, 3))
    lin[:, 0] = vx
    tau = np.full((n, 12), 10.0)
    dq = np.full((n, 12), 1.0)
    feet = np.zeros((n, 4, 3))
    feet[:, :, 2] = 0.036
    feet[:, 0, 0] = 0.01 * np.arange(n)  # one foot slides 0.5 m/s while in contact
    return TrialData(
        t=t, pos=pos, quat_xyzw=quat, lin_vel_body=lin, ang_vel_body=np.zeros((n, 3)), q=np.zeros((n, 12)),
        dq=dq, tau=tau, ground_under_base=np.zeros(n), feet=feet, ground_under_feet=np.zeros((n, 4)),
        targets=np.outer(-0.1 * (np.arange(n) % 2), np.ones(12)),  # 0.1 rad up and down every step
        policy_events=[{"t_ns": 4_000_000_000, "message": "FAULT: joint_states has NaN"}],
        bridge_events=[{"t_ns": 4_080_000_000, "level": "warn", "safe_behaviour": "hold"}],
    )  # fmt: skip


def _context(fault_at: float | None = None) -> TrialContext:
    return TrialContext(
        segments=[CommandSegment("w", "walk", 0.0, 4.0, (0.6, 0, 0)), CommandSegment("x", "walk", 4.0, 2.0, (3, 0, 0))],
        lead_s=0.0, total_mass_kg=31.6, joint_lower=np.full(12, -1.0), joint_upper=np.full(12, 0.0),
        ranges=RANGES, control_dt=0.02, fault_at_s=fault_at,
    )  # fmt: skip


def test_metrics_follow_their_definitions() -> None:
    m = compute(_trial_data(), _context(fault_at=4.0))
    assert m["survived"] and m["time_to_fall_s"] is None
    assert m["tracking_vxy_worst_m_s"] == pytest.approx(2.5)  # 0.5 achieved against 3.0 commanded
    assert m["segments"][0]["err_vxy"] == pytest.approx(0.1)
    assert m["tracking_vxy_mean_m_s"] == pytest.approx((0.1 + 2.5) / 2)
    assert m["foot_slip_m_s"] == pytest.approx(0.5 / 4)  # one foot of four slides at 0.5 m/s
    assert m["torque_peak_nm"] == 10.0 and m["torque_rms_nm"] == 10.0
    assert m["power_mean_w"] == pytest.approx(120.0)
    assert m["cost_of_transport"] == pytest.approx(120.0 / (31.6 * 9.81 * 0.5), rel=1e-5)
    assert m["action_rate"] == pytest.approx(0.5)  # 0.1 rad per step at the 0.2 action scale
    assert m["joint_limit_clips"] == 151 * 12  # the targets at 0.0 sit on the upper limit
    assert m["command_clips"] == 100  # the 3.0 m/s segment exceeds the trained 2.0
    assert m["fault_detect_s"] == 0.0 and m["safe_state_s"] == pytest.approx(0.08)
    assert m["tilt_max_deg"] == pytest.approx(0.0, abs=1e-6)


def test_a_fall_is_found_and_ends_the_scoring() -> None:
    m = compute(_trial_data(fall_at=150), _context())
    assert m["fell"] and m["time_to_fall_s"] == pytest.approx(3.0)
    assert m["tilt_max_deg"] == pytest.approx(90.0, abs=1e-3)
    assert m["segments"][1]["samples"] == 0


def _judged(values: list[float], thresholds: dict, survived: list[bool] | None = None):
    from spot_policy_tools.evaluate.scenario import Scenario

    s = parse_suite(minimal(thresholds=thresholds)).scenarios[0]
    assert isinstance(s, Scenario)
    trials = [
        {"survived": (survived or [True] * len(values))[i], "tracking_vxy_worst_m_s": v, "tilt_max_deg": 10.0 + i}
        for i, v in enumerate(values)
    ]
    return verdict.judge(s, trials)


def test_verdict_reads_trials_as_documented() -> None:
    ok = _judged([0.10, 0.12], {"tracking_vxy_max_m_s": 0.15, "tilt_max_deg": 10.5, "survival_rate_min": 1.0})
    assert ok["failed_checks"] == ["tilt_max_deg"]  # the worst trial (11 deg) counts for excursions
    mean = next(c for c in ok["checks"] if c["threshold"] == "tracking_vxy_max_m_s")
    assert mean["aggregate"] == "mean" and mean["value"] == pytest.approx(0.11)
    fell = _judged([0.1, 0.1, 0.1], {"survival_rate_min": 1.0}, survived=[True, False, True])
    assert fell["passed"] is False and fell["aggregate"]["survival"]["k"] == 2
    assert _judged([0.1], {})["passed"] is None  # no thresholds: information only


def _doc(values: dict[str, list[float]], passed: dict[str, bool], label: str = "A") -> dict:
    scenarios = {}
    for name, vs in values.items():
        metrics = {k: stats.summarize([]) for k in verdict.AGGREGATED}
        metrics["tracking_vxy_worst_m_s"] = stats.summarize(vs)
        scenarios[name] = {
            "passed": passed[name],
            "failed_checks": [] if passed[name] else ["tracking_vxy_max_m_s"],
            "thresholds": {"tracking_vxy_max_m_s": 0.15},
            "aggregate": {"survival": stats.rate([True] * len(vs)), "metrics": metrics},
        }
    return {"schema": compare.SCHEMA, "policies": [{"label": label, "scenarios": scenarios}]}


def test_regressions_name_the_scenarios() -> None:
    base = _doc({"a": [0.05, 0.06], "b": [0.05, 0.05], "c": [0.05, 0.05]}, {"a": True, "b": True, "c": True})
    now = _doc({"a": [0.05, 0.06], "b": [0.20, 0.21], "c": [0.07, 0.071]}, {"a": True, "b": False, "c": True})
    result = compare.regressions(base, now)
    assert [r["scenario"] for r in result["regressed"]] == ["b", "c"]  # c: worse by more than 10 % of 0.15
    assert "passed in the baseline, fails now" in result["regressed"][0]["reasons"][0]
    assert compare.regressions(base, base)["regressed"] == []
    with pytest.raises(compare.ResultsError, match=r"fix: give a results\.json"):
        compare.check_results({"schema": "other"}, "x.json")


def test_side_by_side_marks_the_better_policy_only_beyond_the_spread() -> None:
    a = _doc({"a": [0.05, 0.06, 0.055], "b": [0.05, 0.06]}, {"a": True, "b": True}, "A")["policies"][0]
    b = _doc({"a": [0.30, 0.31, 0.305], "b": [0.052, 0.061]}, {"a": False, "b": True}, "B")["policies"][0]
    table = compare.side_by_side([a, b])["scenarios"]
    assert table["a"]["metrics"]["tracking_vxy_worst_m_s"]["better"] == "A"
    assert table["b"]["metrics"]["tracking_vxy_worst_m_s"]["better"] is None


def test_timeline_lands_on_control_steps() -> None:
    points = timeline(
        [("stand", "stand", 0.0, 1.0, (0, 0, 0)), ("walk", "walk", 1.0, 2.0, (0.5, 0, 0))],
        [(1.51, (0.0, 0.5, 0.0))],
        2.5,
        3.0,
        0.02,
    )
    times = [p.t_ns for p in points]
    assert times == sorted(set(times)) and all(t % 20_000_000 == 0 for t in times)
    assert points[-1].end and points[-1].t_ns == 3_000_000_000
    assert any(p.pushes for p in points if p.t_ns == 1_520_000_000)
    # The NaN lands on the instant at 2.5 s: held at 2.48 the policy has answered its last clean one.
    assert [p.t_ns for p in points if p.silent_from_here] == [2_480_000_000]
    # Between instants the fault lands on the next one; and only where something happens is a point.
    late = timeline([("stand", "stand", 0.0, 3.0, (0, 0, 0))], [], 2.505, 3.0, 0.02)
    assert [p.t_ns for p in late if p.silent_from_here] == [2_500_000_000]
    assert times == [0, 1_000_000_000, 1_520_000_000, 2_480_000_000, 3_000_000_000]


def test_report_html_is_self_contained(tmp_path: Path) -> None:
    doc = json.loads((Path(__file__).parent / "data" / "evaluate_results.json").read_text())
    page = report.render_html(doc, {}, tmp_path)
    assert 'id="scorecard"' in page and "<svg" in page
    for forbidden in ("http://", "https://", "<script src", "<link"):
        assert forbidden not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert math.isfinite(len(page))


def test_results_schema_is_documented() -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "EVALUATION.md").read_text()
    doc = json.loads((Path(__file__).parent / "data" / "evaluate_results.json").read_text())
    for key in doc:
        assert f"`{key}`" in text
    for key in doc["definitions"]:
        assert f"`{key}`" in text
    for key in yaml.safe_load((SCENARIOS / "quick.yaml").read_text())["thresholds"]:
        assert f"`{key}`" in text


def test_sim_bridge_overrides_are_typed_for_ros() -> None:
    from spot_policy_tools.sim_job import bridge_overrides

    params = bridge_overrides(["terrain=slope", "terrain_slope_deg=8", "imu_gyro_bias=[0,0,0.05]", "terrain_seed=3"])
    assert params == {
        "terrain": "slope",
        "terrain_slope_deg": 8.0,
        "imu_gyro_bias": [0.0, 0.0, 0.05],
        "terrain_seed": 3,
    }
    assert isinstance(params["terrain_slope_deg"], float) and isinstance(params["terrain_seed"], int)
    with pytest.raises(ValueError, match="not KEY=VALUE; fix:"):
        bridge_overrides(["terrain"])


def test_parallel_workers_take_the_slowest_trials_first(tmp_path: Path) -> None:
    """Longest expected wall time first, so no long trial runs alone at the end while the other
    worker idles; a fault's quiet seconds count for more than walking ones. Only the order changes,
    never which trials run."""
    from spot_policy_tools.evaluate import runner

    info = runner.policy_info("spot_flat_mjx", "a")
    specs = runner.trial_specs(load_suite(SCENARIOS / "quick.yaml"), [info], tmp_path, media=False)
    order = runner.longest_first(specs)
    assert sorted(map(id, order)) == sorted(map(id, specs))
    walls = [runner.expected_wall_s(s) for s in order]
    assert walls == sorted(walls, reverse=True)
    names = [s.scenario.name for s in order]
    assert names[:2] == ["track_steps"] * 2  # 12 sim s each
    assert names.index("safety_nan") < names.index("turn_sidestep")  # 4 sim s (2.5 after the fault) vs 7


def test_a_bag_of_batched_ground_truth_reads_back_instant_by_instant(tmp_path: Path) -> None:
    """trial_data.read_bag on a bag written now by the recorder's writer, holding what a bridge with
    ground_truth_batch publishes (rows from GroundTruthBatch, serialized by rclpy): every instant
    comes back bit for bit, a repeated instant as its later row, no targets before the first command."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Float64MultiArray

    from spot_policy.core import contract
    from spot_policy.ros.bag_recorder import BagRecorder
    from spot_policy_tools.evaluate.trial_data import read_bag
    from spot_sim_bridge.core.ground_truth import GroundTruthBatch

    rng = np.random.default_rng(5)
    batch = GroundTruthBatch(2, contract.ISAAC_JOINT_ORDER)
    stamps = [0, 0, 20_000_000, 40_000_000]  # the start state twice, as a waiting bridge republishes it
    rows = [rng.normal(size=(4, 12)) for _ in stamps]  # q, dq, tau, targets per instant
    with BagRecorder(tmp_path / "bag") as bag:
        for i, stamp in enumerate(stamps):
            q, dq, tau, targets = rows[i]
            batch.add(stamp, (i, 0.0, 0.5), (0.0, 0.0, 0.0, 1.0), (0.3, 0.0, 0.0), (0.0, 0.0, 0.1), q, dq, tau,
                      None if i < 2 else targets)  # fmt: skip
            if batch.full:
                message = Float64MultiArray(data=batch.take().tolist())
                bag.write("/sim_bridge/ground_truth/batch", "std_msgs/msg/Float64MultiArray",
                          serialize_message(message), stamp)  # fmt: skip
    series = read_bag(tmp_path / "bag")
    assert series["t_ns"].tolist() == [0, 20_000_000, 40_000_000]
    assert series["odom"][:, 0].tolist() == [1.0, 2.0, 3.0]  # the later of the two rows at t = 0
    for name, column in (("q", 0), ("dq", 1), ("tau", 2)):
        assert np.array_equal(series[name], np.array([rows[i][column] for i in (1, 2, 3)]))
    assert np.isnan(series["targets"][0]).all()
    assert np.array_equal(series["targets"][1:], np.array([rows[i][3] for i in (2, 3)]))


def test_ray_addresses_are_probed_only_when_plain_host_port() -> None:
    from spot_policy_tools.evaluate.ray_connect import explain, host_port

    assert host_port("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert host_port("head.local:6379") == ("head.local", 6379)
    for other in ("auto", "local", "ray://10.0.0.5:10001", "[::1]:6379", "10.0.0.5", "10.0.0.5:", ":6379"):
        assert host_port(other) is None, other
    # What Ray chains together (a ConnectionError from a RuntimeError carrying a traceback) becomes one line.
    try:
        try:
            raise RuntimeError("Failed to connect to GCS. Last connection error: ... InvalidAuthToken: missing")
        except RuntimeError as inner:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.5:6379") from inner
    except ConnectionError as exc:
        line = explain("10.0.0.5:6379", exc)
    assert "refused this client's authentication" in line and "fix: export RAY_AUTH_MODE=token" in line
    assert "\n" not in line
    missing = explain("auto", ConnectionError("Could not find any running Ray instance. Please specify ..."))
    assert missing.startswith("--ray auto: no running Ray cluster found") and "ray start --head" in missing
    other = explain("10.0.0.5:6379", ValueError("version mismatch: 2.59.0\ndetails"))
    assert other == (
        "--ray 10.0.0.5:6379: cannot connect (ValueError: version mismatch: 2.59.0); "
        "fix: check the address and that the cluster runs Ray 2.60.0"
    )


def test_progress_writes_to_the_stderr_of_when_it_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from spot_policy_tools.evaluate.runner import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, log = Terminal(), io.StringIO()
    monkeypatch.setattr("sys.stderr", terminal)
    on_terminal = Progress(2, 10.0)  # no stream given: today's stderr, a terminal
    on_terminal.trial_done("p/a#0", 5.0, True)
    on_terminal.close()
    assert terminal.getvalue().startswith("\r\033[K[##############--------------] 1/2 trials,  50%")
    assert terminal.getvalue().endswith("p/a#0\n")
    monkeypatch.setattr("sys.stderr", log)
    in_log = Progress(2, 10.0)
    in_log.trial_done("p/b#0", 10.0, False)
    in_log.close()
    assert log.getvalue().startswith("[############################] 1/2 trials, 100%")
    assert log.getvalue().endswith("p/b#0 (FAILED)\n") and "\r" not in log.getvalue()
