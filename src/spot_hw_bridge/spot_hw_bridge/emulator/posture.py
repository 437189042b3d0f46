"""Spot's own postures for the emulator: its stand (height and orientation from the stand command's
``mobility_params``), its sit, and the straight-line foot paths between them. No ROS here.

Where the numbers come from:

- Stand joint angles: Boston Dynamics publishes none (their joint-control examples read the pose at
  run time: spot-sdk v5.1.4 ``python/examples/joint_control/noarm_squat.py:105-107``). The emulator
  uses a real Spot standing under its own controller, arm stowed, from the LaNMP dataset's data card
  (github h2r/LaNPM-Dataset ``DataCard.md``, field ``all_joint_angles``): fl.hx 0.0138, fl.hy 0.7961,
  fl.kn -1.5724 rad. Its ``feet_state_rel_body`` (0.3207, 0.1730, -0.5149) m agrees with this
  model's forward kinematics of those angles (0.3221, 0.1726, -0.5166 m at the foot's sole) within
  2 mm, so the record and the model are consistent. The record gives the front-left leg only: the
  same angles on every leg (hx mirrored) are an assumption.
- Stand height: the body origin 0.517 m above flat ground (the forward kinematics above); Boston
  Dynamics' RL Researcher Kit says "default or 0.525m" (github boston-dynamics/spot-rl-example
  ``python/spot/spot.py:74-79``).
- ``mobility_params``: ``body_control.base_offset_rt_footprint`` carries the body height as a
  position offset "relative to a nominal stand height" and ``footprint_R_body`` as the rotation
  (spot-sdk ``python/bosdyn-client/src/bosdyn/client/robot_command.py:1763-1796``); the footprint
  frame is gravity aligned, at the feet's geometric centre in x-y and the hips' nominal height in
  z (``protos/bosdyn/api/spot/robot_command.proto:147-155``). Boston Dynamics publishes no limits;
  the robot saturates body poses to achievable ones (same proto, lines 167-171). The emulator's
  saturation (:data:`HEIGHT_RANGE_M`, :data:`ROTATION_LIMIT_RAD`) is its own choice.
- Sit: the emulator folds the legs under the hips until the body origin is :data:`SIT_HEIGHT_M`
  above the ground (its choice; a powered-off Spot then rests on its belly).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import mujoco
import numpy as np

from spot_policy.core import contract

ISAAC = contract.ISAAC_JOINT_ORDER
LEGS = contract.LEGS
#: A real Spot's own stand (LaNMP record, front-left leg), used on every leg with hx mirrored.
SPOT_STAND_ANGLES: dict[str, float] = {"hx": 0.0138, "hy": 0.7961, "kn": -1.5724}
#: Body height offsets the emulator's stand accepts (m, relative to the nominal stand); beyond: saturated.
HEIGHT_RANGE_M = (-0.20, 0.10)
#: Roll, pitch, yaw of ``footprint_R_body`` the emulator's stand accepts (rad each); beyond: saturated.
ROTATION_LIMIT_RAD = (0.3, 0.35, 0.3)
#: Body origin above the ground when the emulator's Spot sits (its folded legs under the hips).
SIT_HEIGHT_M = 0.19
_IK_TOLERANCE_M = 1e-5
_IK_ITERATIONS = 30
#: A stand whose feet the legs miss by more than this is scaled back toward the nominal stand.
_REACH_TOLERANCE_M = 0.002


def spot_stand_angles() -> dict[str, float]:
    """Spot's own stand, by joint name (hx mirrored: + on the left legs)."""
    pose = {}
    for leg in LEGS:
        pose[f"{leg}_hx"] = SPOT_STAND_ANGLES["hx"] if leg.endswith("l") else -SPOT_STAND_ANGLES["hx"]
        pose[f"{leg}_hy"] = SPOT_STAND_ANGLES["hy"]
        pose[f"{leg}_kn"] = SPOT_STAND_ANGLES["kn"]
    return pose


@dataclass(frozen=True)
class BodyOffset:
    """A stand's body pose relative to the nominal stand: height (m) and roll, pitch, yaw (rad)."""

    height: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0

    @classmethod
    def from_quaternion(cls, height: float, w: float, x: float, y: float, z: float) -> BodyOffset:
        """From ``footprint_R_body`` as a quaternion (the SDK builds it from ``EulerZXY``)."""
        n = math.sqrt(w * w + x * x + y * y + z * z)
        if n == 0.0 or not math.isfinite(n):
            w, x, y, z, n = 1.0, 0.0, 0.0, 0.0, 1.0
        w, x, y, z = w / n, x / n, y / n, z / n
        rot = _quat_matrix(w, x, y, z)
        # ZXY Euler angles (yaw about z, then roll about x, then pitch about y), as bosdyn's EulerZXY.
        roll = math.asin(max(-1.0, min(1.0, rot[2, 1])))
        pitch = math.atan2(-rot[2, 0], rot[2, 2])
        yaw = math.atan2(-rot[0, 1], rot[1, 1])
        return cls(float(height), roll, pitch, yaw)

    def saturated(self) -> BodyOffset:
        """Within what the emulator's stand reaches (the robot saturates rather than refuses)."""
        lo, hi = HEIGHT_RANGE_M
        r, p, y = ROTATION_LIMIT_RAD
        height = self.height if math.isfinite(self.height) else 0.0
        angles = [v if math.isfinite(v) else 0.0 for v in (self.roll, self.pitch, self.yaw)]
        return BodyOffset(
            min(max(height, lo), hi),
            min(max(angles[0], -r), r),
            min(max(angles[1], -p), p),
            min(max(angles[2], -y), y),
        )

    def rotation(self) -> np.ndarray:
        """footprint_R_body: yaw about z, then roll about x, then pitch about y (EulerZXY)."""
        cz, sz = math.cos(self.yaw), math.sin(self.yaw)
        cx, sx = math.cos(self.roll), math.sin(self.roll)
        cy, sy = math.cos(self.pitch), math.sin(self.pitch)
        rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
        rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
        ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
        return rz @ rx @ ry

    def scaled(self, factor: float) -> BodyOffset:
        return BodyOffset(self.height * factor, self.roll * factor, self.pitch * factor, self.yaw * factor)

    def describe(self) -> str:
        return f"height {self.height:+.3f} m, roll {self.roll:+.2f}, pitch {self.pitch:+.2f}, yaw {self.yaw:+.2f} rad"


def _quat_matrix(w: float, x: float, y: float, z: float) -> np.ndarray:
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


class LegKinematics:
    """Spot's four legs in the body frame, from the MuJoCo model: foot centres from joint angles and back.

    Works on a private ``MjData`` (the body's own state is never touched); joint arrays are in Isaac order.
    """

    def __init__(self, model: mujoco.MjModel) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self._lock = threading.Lock()  # one scratch MjData: one caller at a time
        base = model.joint("base")
        self._base_q = int(base.qposadr[0])
        self.foot_geoms = np.array([model.geom(f"{leg}_foot").id for leg in LEGS], dtype=np.intp)
        self.foot_radius = float(model.geom_size[self.foot_geoms[0]][0])
        self._qadr = np.array([model.joint(n).qposadr[0] for n in ISAAC], dtype=np.intp)
        self._dofadr = np.array([model.joint(n).dofadr[0] for n in ISAAC], dtype=np.intp)
        self._legs = [np.array([ISAAC.index(f"{leg}_{j}") for j in ("hx", "hy", "kn")]) for leg in LEGS]
        self.lower = np.array([model.joint(n).range[0] for n in ISAAC])
        self.upper = np.array([model.joint(n).range[1] for n in ISAAC])
        self._jac = np.zeros((3, model.nv))
        self.stand_q = np.array([spot_stand_angles()[n] for n in ISAAC])
        self.nominal_feet = self.feet(self.stand_q)
        #: Body origin above flat ground in the nominal stand (the feet's soles on the ground).
        self.nominal_height = float(-self.nominal_feet[:, 2].mean() + self.foot_radius)
        centre = self.nominal_feet.mean(axis=0)
        self._footprint = np.array([centre[0], centre[1], 0.0])  # the footprint origin, nominal body frame

    def feet(self, q: np.ndarray) -> np.ndarray:
        """(4, 3) foot-sphere centres in the body frame for joint angles ``q``."""
        with self._lock:
            self._place(q)
            return self.data.geom_xpos[self.foot_geoms].copy()

    def _place(self, q: np.ndarray) -> None:
        d, b = self.data, self._base_q
        d.qpos[b : b + 3] = 0.0
        d.qpos[b + 3 : b + 7] = (1.0, 0.0, 0.0, 0.0)
        d.qpos[self._qadr] = q
        mujoco.mj_kinematics(self.model, d)

    def solve(self, feet: np.ndarray, guess: np.ndarray) -> tuple[np.ndarray, float]:
        """Joint angles putting the foot centres at ``feet`` (body frame), from ``guess``; (q, worst miss m).

        Damped least squares per leg, within the joint limits: an unreachable foot ends as close as
        the leg gets (the miss says how far).
        """
        with self._lock:
            return self._solve(feet, guess)

    def _solve(self, feet: np.ndarray, guess: np.ndarray) -> tuple[np.ndarray, float]:
        q = np.clip(np.asarray(guess, dtype=np.float64).copy(), self.lower, self.upper)
        m, d = self.model, self.data
        worst = 0.0
        for i, joints in enumerate(self._legs):
            geom = int(self.foot_geoms[i])
            error = np.inf
            for _ in range(_IK_ITERATIONS):
                self._place(q)
                miss = feet[i] - d.geom_xpos[geom]
                error = float(np.linalg.norm(miss))
                if error < _IK_TOLERANCE_M:
                    break
                mujoco.mj_comPos(m, d)  # the Jacobian needs the com-based motion dofs
                mujoco.mj_jacGeom(m, d, self._jac, None, geom)
                jac = self._jac[:, self._dofadr[joints]]
                step = jac.T @ np.linalg.solve(jac @ jac.T + 1e-6 * np.eye(3), miss)
                q[joints] = np.clip(q[joints] + step, self.lower[joints], self.upper[joints])
            worst = max(worst, error)
        return q, worst

    def stand_feet(self, offset: BodyOffset) -> np.ndarray:
        """Foot centres (body frame) of a stand at ``offset``: the feet stay where the nominal stand
        has them on the ground; the body moves and turns about the footprint origin."""
        rot = offset.rotation()
        lift = np.array([0.0, 0.0, offset.height])
        # In the footprint frame the feet keep their place; body frame = R^T (foot - body position).
        return self._footprint + (self.nominal_feet - self._footprint - lift) @ rot

    def stand_on_feet(self, feet_world: np.ndarray, offset: BodyOffset, guess: np.ndarray) -> np.ndarray:
        """Joint angles of the stand at ``offset`` over the feet where they actually are (foot centres,
        world frame): the footprint frame is taken from them (centre, heading hind to front, ground
        under the soles), so legs whose feet slipped are not left pushing against each other."""
        centre = feet_world.mean(axis=0)
        front, hind = feet_world[:2, :2].mean(axis=0), feet_world[2:, :2].mean(axis=0)
        heading = math.atan2(front[1] - hind[1], front[0] - hind[0])
        c, s = math.cos(heading), math.sin(heading)
        yaw = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        ground = float(feet_world[:, 2].mean()) - self.foot_radius
        origin = np.array([centre[0], centre[1], ground + self.nominal_height])
        # The feet in the footprint frame, as the nominal stand has them relative to its footprint origin.
        in_footprint = (feet_world - origin) @ yaw
        lift = np.array([0.0, 0.0, offset.height])
        q, _ = self.solve(self._footprint + (in_footprint - lift) @ offset.rotation(), guess)
        return q

    def stand_pose(self, offset: BodyOffset = BodyOffset()) -> tuple[np.ndarray, BodyOffset]:
        """Joint angles (Isaac order) of the stand at ``offset``, and the offset reached: one the legs
        cannot reach is scaled back toward the nominal stand until they can (saturated)."""
        q, miss = self.solve(self.stand_feet(offset), self.stand_q)
        if miss <= _REACH_TOLERANCE_M:
            return q, offset
        low, high, best = 0.0, 1.0, (self.stand_q.copy(), BodyOffset())
        for _ in range(10):
            mid = 0.5 * (low + high)
            trial = offset.scaled(mid)
            q, miss = self.solve(self.stand_feet(trial), self.stand_q)
            if miss <= _REACH_TOLERANCE_M:
                low, best = mid, (q, trial)
            else:
                high = mid
        return best

    def sit_pose(self) -> np.ndarray:
        """The legs folded under the hips, body origin :data:`SIT_HEIGHT_M` above the ground."""
        return self.stand_pose(BodyOffset(height=SIT_HEIGHT_M - self.nominal_height))[0]

    def foot_path(self, start_q: np.ndarray, goal_q: np.ndarray, waypoints: int = 12) -> np.ndarray:
        """(waypoints + 1, 12) joint angles moving every foot on a straight line (body frame) from
        where ``start_q`` has it to where ``goal_q`` has it: a stand-up lifts the body without
        dragging the feet (a joint-space blend would sweep them and leave friction preloads)."""
        a, b = self.feet(start_q), self.feet(goal_q)
        path = np.empty((waypoints + 1, len(ISAAC)))
        q = np.asarray(start_q, dtype=np.float64)
        path[0] = q
        for k in range(1, waypoints + 1):
            s = k / waypoints
            q, _ = self.solve(a + (b - a) * s, q)
            path[k] = q
        path[-1] = goal_q
        return path
