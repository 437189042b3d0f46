"""The simulator's exact state as rows of float64: what a harness reads in batches.

A lock-stepped harness (the evaluation) needs every instant's exact state, but not one message
per instant: three messages a control step (odometry, joints, targets) cost the bridge as many
publishes and the reader as many wake-ups. The bridge's ``ground_truth_batch`` parameter
packs instants into rows of :data:`FIELDS` instead, published together (``~/ground_truth/batch``,
``std_msgs/Float64MultiArray``). The values are the ones the per-instant topics carry, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spot_policy.core import contract

_JOINTS = contract.ISAAC_JOINT_ORDER
#: A row: the stamp (ns, exact below 2**53 ns, about 104 days), the base's pose (odom frame, quaternion
#: x y z w) and twist (body frame), then per joint (Isaac Lab order) position, velocity, effort and
#: the target in force (NaN before the first command).
FIELDS: tuple[str, ...] = (
    "t_ns",
    *("x", "y", "z", "qx", "qy", "qz", "qw"),
    *("vx", "vy", "vz", "wx", "wy", "wz"),
    *(f"{j}.position" for j in _JOINTS),
    *(f"{j}.velocity" for j in _JOINTS),
    *(f"{j}.effort" for j in _JOINTS),
    *(f"{j}.target" for j in _JOINTS),
)
WIDTH = len(FIELDS)
_Q = FIELDS.index(f"{_JOINTS[0]}.position")
_N = len(_JOINTS)


class GroundTruthBatch:
    """Rows collected until :meth:`take`; ``joint_names`` is the simulator's joint order."""

    def __init__(self, capacity: int, joint_names: Sequence[str]) -> None:
        if capacity < 1:
            raise ValueError(f"a ground-truth batch holds at least one instant, not {capacity}")
        where = {contract.canonical_joint_name(n) or n: i for i, n in enumerate(joint_names)}
        missing = [j for j in _JOINTS if j not in where]
        if missing:
            raise ValueError(f"the simulator has no joint(s) {', '.join(missing)}")
        self._order = np.array([where[j] for j in _JOINTS])
        self._rows = np.empty((capacity, WIDTH))
        self.size = 0

    @property
    def full(self) -> bool:
        return self.size == len(self._rows)

    def add(
        self,
        stamp_ns: int,
        position: Sequence[float],
        quat_xyzw: Sequence[float],
        lin_vel_body: Sequence[float],
        ang_vel_body: Sequence[float],
        q: np.ndarray,
        dq: np.ndarray,
        tau: np.ndarray,
        targets: np.ndarray | None,
    ) -> None:
        """One instant (the caller takes the batch once :attr:`full`)."""
        row = self._rows[self.size]
        row[0] = stamp_ns
        row[1:4], row[4:8], row[8:11], row[11:14] = position, quat_xyzw, lin_vel_body, ang_vel_body
        order = self._order
        row[_Q : _Q + _N] = np.asarray(q)[order]
        row[_Q + _N : _Q + 2 * _N] = np.asarray(dq)[order]
        row[_Q + 2 * _N : _Q + 3 * _N] = np.asarray(tau)[order]
        row[_Q + 3 * _N :] = np.nan if targets is None else np.asarray(targets)[order]
        self.size += 1

    def take(self) -> np.ndarray:
        """The rows collected so far, flattened row by row; the batch is empty after."""
        out = self._rows[: self.size].ravel().copy()
        self.size = 0
        return out


def split(values: Sequence[float]) -> dict[str, np.ndarray]:
    """Rows (flattened, as published) as columns: ``t_ns`` (int64), ``odom`` (N x 13: position,
    quaternion x y z w, linear and angular velocity), ``q``, ``dq``, ``tau``, ``targets`` (N x 12)."""
    rows = np.asarray(values, dtype=np.float64)
    if rows.size % WIDTH:
        raise ValueError(f"a ground-truth batch of {rows.size} values is not whole rows of {WIDTH}")
    rows = rows.reshape(-1, WIDTH)
    return {
        "t_ns": rows[:, 0].astype(np.int64),
        "odom": rows[:, 1:_Q],
        "q": rows[:, _Q : _Q + _N],
        "dq": rows[:, _Q + _N : _Q + 2 * _N],
        "tau": rows[:, _Q + 2 * _N : _Q + 3 * _N],
        "targets": rows[:, _Q + 3 * _N :],
    }
