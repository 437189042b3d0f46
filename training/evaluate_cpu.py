"""Evaluate a shipped policy in the CPU MuJoCo bridge backend, as the deployment runs it (no ROS).

The policy is loaded with ``spot_policy.core.loader.load_policy`` and driven by
``spot_policy.core.controller.PolicyController`` (observation builder, soft start, command and joint
limit clipping), in lockstep with ``spot_sim_bridge.backends.mujoco.MujocoSpot``: every 20 ms the
controller gets the state the bridge would publish, and its targets go to the backend, which runs
10 physics steps of its PD law. Each case starts at rest in the default pose and walks 20 s.

Reported per case: fall (body or leg on the floor, or base below 0.2 m), and after the first
second the mean tracking error two ways: ``mean|v - cmd|`` (instantaneous, gait sway included)
and ``|mean v - cmd|`` (the average velocity reached), linear (xy, body frame, m/s) and yaw (rad/s).

    python training/evaluate_cpu.py [config/policies/spot_flat_mjx] [--json out.json] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for package in ("spot_policy_node", "spot_sim_bridge"):
    sys.path.insert(0, str(REPO / "src" / package))

from spot_policy.core import contract  # noqa: E402
from spot_policy.core.controller import ControllerConfig, Mode, PolicyController  # noqa: E402
from spot_policy.core.loader import load_policy  # noqa: E402
from spot_sim_bridge.backends.mujoco import MujocoSpot  # noqa: E402

DEFAULT_POLICY = REPO / "config" / "policies" / "spot_flat_mjx"
FALL_HEIGHT = 0.2


@dataclass(frozen=True)
class Case:
    name: str
    command: tuple[float, float, float]
    friction: float = 0.8
    payload_kg: float = 0.0
    push_at_s: float | None = None
    push_lateral: float = 0.0  # m/s, along the body's y axis at the moment of the push
    seconds: float = 20.0


@dataclass
class Result:
    case: Case
    fell: bool
    fell_at_s: float | None
    lin_err_inst: float
    ang_err_inst: float
    lin_err_mean_vel: float
    ang_err_mean_vel: float
    mean_vel: tuple[float, float, float]
    notes: list[str] = field(default_factory=list)


def acceptance_cases() -> list[Case]:
    """The issue's acceptance: vx in {-0.5, 0.5, 1.0, 1.5}, vy in {-0.5, 0.5}, wz in {-1, 1}, zero."""
    cases = [Case(f"vx {vx:+.1f}", (vx, 0.0, 0.0)) for vx in (-0.5, 0.5, 1.0, 1.5)]
    cases += [Case(f"vy {vy:+.1f}", (0.0, vy, 0.0)) for vy in (-0.5, 0.5)]
    cases += [Case(f"wz {wz:+.1f}", (0.0, 0.0, wz)) for wz in (-1.0, 1.0)]
    cases.append(Case("zero", (0.0, 0.0, 0.0)))
    cases += [
        Case("friction 0.5, vx +0.5", (0.5, 0.0, 0.0), friction=0.5),
        Case("payload +5 kg, vx +0.5", (0.5, 0.0, 0.0), payload_kg=5.0),
        Case("push 0.5 m/s lateral at 5 s, vx +0.5", (0.5, 0.0, 0.0), push_at_s=5.0, push_lateral=0.5),
    ]
    return cases


def _illegal_contact(spot: MujocoSpot) -> bool:
    """A non-foot robot geom touching the floor (Isaac Lab's body_contact termination)."""
    model, data = spot.mj_model, spot.mj_data
    floor = model.geom("floor").id
    feet = {model.geom(f"{leg}_foot").id for leg in contract.LEGS}
    for i in range(data.ncon):
        g1, g2 = int(data.contact.geom1[i]), int(data.contact.geom2[i])
        other = g2 if g1 == floor else g1 if g2 == floor else None
        if other is not None and other not in feet and data.contact.dist[i] < 0.0:
            return True
    return False


def run_case(case: Case, policy_dir: str) -> Result:
    """One 20 s episode in lockstep; see the module docstring."""
    loaded = load_policy(policy_dir, providers=("cpu",), log=lambda _msg: None)
    spec = loaded.spec
    spot = MujocoSpot(friction=case.friction, payload_kg=case.payload_kg, kp=spec.stiffness, kd=spec.damping)
    spot.reset()
    controller = PolicyController(spec, loaded.model, ControllerConfig())
    names = contract.ISAAC_JOINT_ORDER
    dt = spec.control_dt
    steps_per_control = round(dt / spot.physics_dt)

    def feed(now: float) -> None:
        s = spot.state()
        w, x, y, z = s.base_quat
        controller.joint_state(names, s.q, s.dq, now, stamp=now)
        controller.imu((x, y, z, w), s.base_ang_vel_body, now, stamp=now)
        controller.odom(s.base_lin_vel_body, now, stamp=now)
        controller.cmd_vel(*case.command, now)

    feed(0.0)
    accepted, message = controller.request(Mode.WALK, 0.0)
    if not accepted:
        raise RuntimeError(message)
    n = round(case.seconds / dt)
    velocities = []
    fell_at = None
    pushed = False
    for i in range(n):
        now = i * dt
        feed(now)
        command = controller.step(now)
        if command is None:
            raise RuntimeError(f"controller published nothing at {now:.2f} s: {controller.fault_reason}")
        spot.set_targets(command.positions)
        if case.push_at_s is not None and not pushed and now >= case.push_at_s:
            yaw = _yaw(spot.state().base_quat)
            spot.push(np.array([-math.sin(yaw), math.cos(yaw), 0.0]) * case.push_lateral)
            pushed = True
        spot.step(steps_per_control)
        s = spot.state()
        velocities.append((*s.base_lin_vel_body[:2], s.base_ang_vel_body[2]))
        if fell_at is None and (s.base_pos[2] < FALL_HEIGHT or _illegal_contact(spot)):
            fell_at = (i + 1) * dt
    v = np.array(velocities)[round(1.0 / dt) :]
    cmd = np.array(case.command)
    mean_v = v.mean(axis=0)
    return Result(
        case=case,
        fell=fell_at is not None,
        fell_at_s=fell_at,
        lin_err_inst=float(np.linalg.norm(v[:, :2] - cmd[:2], axis=1).mean()),
        ang_err_inst=float(np.abs(v[:, 2] - cmd[2]).mean()),
        lin_err_mean_vel=float(np.linalg.norm(mean_v[:2] - cmd[:2])),
        ang_err_mean_vel=float(abs(mean_v[2] - cmd[2])),
        mean_vel=tuple(float(x) for x in mean_v),
    )


def _yaw(quat_wxyz: np.ndarray) -> float:
    w, x, y, z = (float(q) for q in quat_wxyz)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def markdown_table(results: list[Result]) -> str:
    lines = [
        "| case | fall | mean\\|v−cmd\\| lin (m/s) | mean\\|v−cmd\\| yaw (rad/s) "
        "| \\|mean v−cmd\\| lin (m/s) | \\|mean v−cmd\\| yaw (rad/s) | mean (vx, vy, wz) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        fall = f"yes at {r.fell_at_s:.1f} s" if r.fell else "no"
        mean = ", ".join(f"{x:+.2f}" for x in r.mean_vel)
        lines.append(
            f"| {r.case.name} | {fall} | {r.lin_err_inst:.3f} | {r.ang_err_inst:.3f} | "
            f"{r.lin_err_mean_vel:.3f} | {r.ang_err_mean_vel:.3f} | {mean} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", nargs="?", default=str(DEFAULT_POLICY), help="run folder or shipped policy folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--jobs", type=int, default=2, help="cases run in parallel processes")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    cases = [Case(**{**asdict(c), "seconds": args.seconds}) for c in acceptance_cases()]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(run_case, cases, [args.policy] * len(cases)))
    print(markdown_table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))


if __name__ == "__main__":
    main()
