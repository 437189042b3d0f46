"""Ground shapes the simulated Spot walks on: flat, a slope, random rough ground, small steps.

One pure function of the parameters (and a seed) gives the height grid, so the backend that builds
the ground (MuJoCo's height field) and the evaluation that scores a run on it (height of the base
above the ground, foot contact) see the same ground. No ROS, no simulator here.

Every non-flat terrain starts ``start_x_m`` ahead of the robot's start (it is reset at the origin
on flat ground, feet at z = 0) and spans the whole width: a policy meets the feature by walking
forward. Behind ``start_x_m`` the ground is flat at z = 0.

- ``slope``: a ramp of ``slope_deg`` (positive: uphill in +x, negative: downhill), planar.
- ``rough``: uniform random heights in [0, ``rough_amplitude_m``] on a grid of
  ``rough_cell_m`` squares (the ground of Isaac Lab's ``random_uniform`` terrain), seeded.
- ``steps``: stairs of ``step_height_m`` (negative: down) every ``step_length_m``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("flat", "slope", "rough", "steps")
#: The ranges the evaluation's scenarios use; the model allows these and no more.
MAX_SLOPE_DEG = 20.0
MAX_ROUGH_AMPLITUDE_M = 0.10
MAX_STEP_HEIGHT_M = 0.15


class TerrainError(ValueError):
    """Terrain parameters that cannot be built; the message names the parameter and the fix."""


@dataclass(frozen=True)
class TerrainSpec:
    kind: str = "flat"
    slope_deg: float = 0.0
    rough_amplitude_m: float = 0.03
    rough_cell_m: float = 0.1
    step_height_m: float = 0.04
    step_length_m: float = 0.6
    start_x_m: float = 1.0
    seed: int = 0
    #: The ground grid: x from x_min_m to x_max_m, y within +-half_width_m, one sample per resolution_m.
    x_min_m: float = -4.0
    x_max_m: float = 16.0
    half_width_m: float = 6.0
    resolution_m: float = 0.05

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TerrainError(f"terrain '{self.kind}' is unknown; use one of {', '.join(KINDS)}")
        checks = (
            ("terrain_slope_deg", abs(self.slope_deg) <= MAX_SLOPE_DEG, f"within +-{MAX_SLOPE_DEG:g} deg"),
            (
                "terrain_rough_amplitude_m",
                0.0 <= self.rough_amplitude_m <= MAX_ROUGH_AMPLITUDE_M,
                f"within 0-{MAX_ROUGH_AMPLITUDE_M:g} m",
            ),
            ("terrain_rough_cell_m", self.rough_cell_m >= self.resolution_m, f">= the resolution {self.resolution_m}"),
            ("terrain_step_height_m", abs(self.step_height_m) <= MAX_STEP_HEIGHT_M, f"within +-{MAX_STEP_HEIGHT_M} m"),
            ("terrain_step_length_m", self.step_length_m >= 0.2, ">= 0.2 m"),
            ("terrain_start_x_m", 0.6 <= self.start_x_m < self.x_max_m, f"within 0.6-{self.x_max_m:g} m"),
        )
        for name, ok, fix in checks:
            if not ok:
                raise TerrainError(f"{name} is {getattr(self, name.removeprefix('terrain_'))}; use a value {fix}")

    @property
    def flat(self) -> bool:
        return self.kind == "flat"

    @property
    def shape(self) -> tuple[int, int]:
        """(rows along y, columns along x) of the grid."""
        ncol = round((self.x_max_m - self.x_min_m) / self.resolution_m) + 1
        nrow = round(2 * self.half_width_m / self.resolution_m) + 1
        return nrow, ncol

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """x (columns) and y (rows) of the grid samples, m."""
        nrow, ncol = self.shape
        return (
            np.linspace(self.x_min_m, self.x_max_m, ncol),
            np.linspace(-self.half_width_m, self.half_width_m, nrow),
        )

    def heights(self) -> np.ndarray:
        """The ground height (nrow, ncol) in m at the grid samples; z = 0 behind ``start_x_m``."""
        xs, ys = self.axes()
        ahead = np.clip(xs - self.start_x_m, 0.0, None)
        if self.kind == "flat":
            row = np.zeros_like(xs)
        elif self.kind == "slope":
            row = math.tan(math.radians(self.slope_deg)) * ahead
        elif self.kind == "steps":
            row = np.where(xs >= self.start_x_m, self.step_height_m * (np.floor(ahead / self.step_length_m) + 1), 0.0)
        else:
            rng = np.random.default_rng(self.seed)
            cells_x = np.floor((xs - self.x_min_m) / self.rough_cell_m).astype(int)
            cells_y = np.floor((ys + self.half_width_m) / self.rough_cell_m).astype(int)
            blocks = rng.uniform(0.0, self.rough_amplitude_m, size=(cells_y.max() + 1, cells_x.max() + 1))
            grid = blocks[np.ix_(cells_y, cells_x)]
            return np.where(xs[None, :] >= self.start_x_m, grid, 0.0)
        return np.broadcast_to(row, (len(ys), len(xs))).copy()

    def height_at(self, x: np.ndarray | float, y: np.ndarray | float, grid: np.ndarray | None = None) -> np.ndarray:
        """Ground height under points (bilinear in the grid; flat ground outside it)."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.flat:
            return np.zeros(np.broadcast(x, y).shape)
        h = self.heights() if grid is None else grid
        nrow, ncol = h.shape
        fx = np.clip((x - self.x_min_m) / self.resolution_m, 0.0, ncol - 1.000001)
        fy = np.clip((y + self.half_width_m) / self.resolution_m, 0.0, nrow - 1.000001)
        c0, r0 = np.floor(fx).astype(int), np.floor(fy).astype(int)
        ax, ay = fx - c0, fy - r0
        top = h[r0, c0] * (1 - ax) + h[r0, c0 + 1] * ax
        bottom = h[r0 + 1, c0] * (1 - ax) + h[r0 + 1, c0 + 1] * ax
        return top * (1 - ay) + bottom * ay


def terrain_from_params(params: dict[str, object]) -> TerrainSpec:
    """A spec from the bridge's ``terrain*`` parameters (``terrain``, ``terrain_slope_deg``, ...)."""
    fields = {
        "kind": str(params.get("terrain", "flat") or "flat"),
        "slope_deg": float(params.get("terrain_slope_deg", 0.0)),
        "rough_amplitude_m": float(params.get("terrain_rough_amplitude_m", 0.03)),
        "step_height_m": float(params.get("terrain_step_height_m", 0.04)),
        "step_length_m": float(params.get("terrain_step_length_m", 0.6)),
        "start_x_m": float(params.get("terrain_start_x_m", 1.0)),
        "seed": int(params.get("terrain_seed", 0)),
    }
    return TerrainSpec(**fields)
