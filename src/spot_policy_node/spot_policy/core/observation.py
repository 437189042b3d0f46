"""The observation vector, built exactly as Isaac Lab's observation manager builds it.

Per term: compute, clip, scale (Isaac Lab clips *before* it scales), then stack ``history``
values oldest first. The node calls :meth:`ObservationBuilder.build` once per control step; it
writes into one preallocated buffer to keep the step cheap.
"""

from __future__ import annotations

import math

import numpy as np

from spot_policy.core.policy_spec import ObsTerm, PolicySpec


def projected_gravity(quat_xyzw: np.ndarray) -> np.ndarray:
    """The unit gravity vector (0, 0, -1) of the world expressed in the body frame."""
    x, y, z, w = (float(v) for v in quat_xyzw)
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if norm == 0.0:
        raise ValueError("orientation quaternion is all zeros")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    # Third row of the body-to-world rotation, negated: R^T @ (0, 0, -1).
    return np.array([-2.0 * (x * z - w * y), -2.0 * (y * z + w * x), -(1.0 - 2.0 * (x * x + y * y))])


class Measurements:
    """What the bridges tell the policy, in the policy's frames and joint order.

    The fields are views into one array laid out in the Spot flat task's term order, so that the
    observation of that task is one subtraction away (see :meth:`ObservationBuilder.build`).
    Update them in place (``m.joint_pos[:] = q``).
    """

    FIELDS = ("base_lin_vel", "base_ang_vel", "gravity", "command", "joint_pos", "joint_vel")
    SIZES = (3, 3, 3, 3, 12, 12)

    def __init__(self, **values: np.ndarray) -> None:
        self.stage = np.zeros(sum(self.SIZES))
        start = 0
        for name, size in zip(self.FIELDS, self.SIZES, strict=True):
            setattr(self, name, self.stage[start : start + size])
            start += size
        self.gravity[:] = (0.0, 0.0, -1.0)  # level until an IMU says otherwise
        for name, value in values.items():
            if name not in self.FIELDS:
                raise TypeError(f"unknown measurement {name}")
            getattr(self, name)[:] = value


#: Term order in which the staged measurements are the observation minus offsets (Spot flat task).
STAGED_ORDER = (
    "base_lin_vel",
    "base_ang_vel",
    "projected_gravity",
    "generated_commands",
    "joint_pos_rel",
    "joint_vel_rel",
    "last_action",
)


class ObservationBuilder:
    def __init__(self, spec: PolicySpec, out: np.ndarray | None = None) -> None:
        """``out``: a float32 vector of ``obs_dim`` to build into (the policy's bound input buffer,
        which saves the step a copy); default a buffer of its own."""
        self.spec = spec
        if out is not None and (out.shape != (spec.obs_dim,) or out.dtype != np.float32):
            raise ValueError(f"observation buffer is {out.dtype}{out.shape}; it must be float32 ({spec.obs_dim},)")
        self.obs = out if out is not None else np.zeros(spec.obs_dim, dtype=np.float32)
        self.obs[:] = 0.0
        self._default = spec.default_joint_pos.astype(np.float64)
        self._terms: tuple[ObsTerm, ...] = spec.obs_terms
        self._history: dict[str, np.ndarray | None] = {t.name: None for t in self._terms if t.history > 0}
        # The step is hot. For the Spot flat layout (plain terms in staged order), the observation is
        # the staged measurements minus the default pose, then the last action: two operations.
        self._fast = tuple(t.func for t in self._terms) == STAGED_ORDER and all(
            t.clip is None and t.scale is None and t.history == 0 for t in self._terms
        )
        self._stage_offset = np.zeros(36)
        self._stage_offset[12:24] = self._default
        self._staged, self._last = self.obs[:36], self.obs[36:]

    def reset(self) -> None:
        """Forget history: the next build fills every history slot with its first value, as Isaac Lab does."""
        for name in self._history:
            self._history[name] = None

    def term_values(self, m: Measurements, last_action: np.ndarray) -> dict[str, np.ndarray]:
        """The raw (unclipped, unscaled) value of each supported function."""
        return {
            "base_lin_vel": m.base_lin_vel,
            "base_ang_vel": m.base_ang_vel,
            "projected_gravity": m.gravity,
            "generated_commands": m.command,
            "joint_pos_rel": m.joint_pos - self._default,
            "joint_vel_rel": m.joint_vel,
            "last_action": last_action,
        }

    def build(self, m: Measurements, last_action: np.ndarray) -> np.ndarray:
        """Fill and return the observation buffer (float32, reused between calls)."""
        if self._fast:
            np.subtract(m.stage, self._stage_offset, out=self._staged, casting="same_kind")
            self._last[:] = last_action
            return self.obs
        values = self.term_values(m, last_action)
        for term in self._terms:
            value = values[term.func]
            if term.clip is not None:
                value = np.clip(value, term.clip[0], term.clip[1])
            if term.scale is not None:
                value = value * term.scale
            if term.history > 0:
                buffer = self._history[term.name]
                if buffer is None:
                    buffer = np.tile(np.asarray(value, dtype=np.float32), (term.history, 1))
                else:
                    buffer[:-1] = buffer[1:]
                    buffer[-1] = value
                self._history[term.name] = buffer
                self.obs[term.start : term.stop] = buffer.reshape(-1)
            else:
                self.obs[term.start : term.stop] = value
        return self.obs
