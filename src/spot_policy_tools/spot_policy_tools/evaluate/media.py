"""A short GIF of a failed trial, rendered offscreen from its ground truth on its own terrain.

A kinematic replay (no physics): the recorded base pose and joint angles are set into the MuJoCo
model built with the trial's terrain, ``mj_forward`` places the bodies, the model's ``track``
camera follows the robot. Small (256x192, 8 fps, at most 6 s around the failure) so a report
with several failures stays a few MB and opens from disk.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from spot_policy.core import contract
from spot_policy_tools.evaluate.metrics import TrialData
from spot_sim_bridge.core.terrain import TerrainSpec

WIDTH, HEIGHT, FPS = 256, 192, 8
WINDOW_S = 6.0


def frame_times(t: np.ndarray, focus_s: float | None) -> np.ndarray:
    """Frame instants: ``WINDOW_S`` ending 2 s after the failure (or the whole trial's last seconds)."""
    end = min(float(t[-1]), (focus_s + 2.0) if focus_s is not None else float(t[-1]))
    start = max(float(t[0]), end - WINDOW_S)
    return np.arange(start, end + 1e-9, 1.0 / FPS)


def render_gif(data: TrialData, terrain: TerrainSpec, path: Path, focus_s: float | None = None) -> Path:
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "osmesa"
    import imageio.v3 as iio
    import mujoco

    from spot_sim_bridge.backends.mujoco import load_model

    model = load_model(None, terrain)
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, WIDTH)
    d = mujoco.MjData(model)
    base = int(model.joint("base").qposadr[0])
    joints = np.array([model.joint(n).qposadr[0] for n in contract.ISAAC_JOINT_ORDER])
    times = frame_times(data.t, focus_s)
    idx = np.clip(np.searchsorted(data.t, times), 0, len(data.t) - 1)
    frames = []
    renderer = mujoco.Renderer(model, height=HEIGHT, width=WIDTH)
    try:
        for i in idx:
            d.qpos[base : base + 3] = data.pos[i]
            x, y, z, w = data.quat_xyzw[i]
            d.qpos[base + 3 : base + 7] = (w, x, y, z)
            d.qpos[joints] = data.q[i]
            mujoco.mj_forward(model, d)
            renderer.update_scene(d, camera="track")
            frames.append(renderer.render().copy())
    finally:
        renderer.close()
    path = Path(path)
    iio.imwrite(path, np.stack(frames), extension=".gif", duration=int(1000 / FPS), loop=0)
    return path
