"""The --gui viewer's camera follows Spot: after Spot moves, the camera looks at it (MuJoCo's own
camera update, as the viewer runs it each frame)."""

from __future__ import annotations

import mujoco
import numpy as np

from spot_sim_bridge.backends.mujoco_viewer import follow_robot
from spot_sim_bridge.model import SPOT_MJCF


def test_camera_tracks_spot_as_it_moves() -> None:
    model = mujoco.MjModel.from_xml_path(str(SPOT_MJCF))
    data = mujoco.MjData(model)
    camera, option, perturb = mujoco.MjvCamera(), mujoco.MjvOption(), mujoco.MjvPerturb()
    scene = mujoco.MjvScene(model, maxgeom=1000)
    follow_robot(camera, model)
    for x, y in ((0.0, 0.0), (5.0, -3.0)):
        data.qpos[:2] = x, y
        mujoco.mj_forward(model, data)
        mujoco.mjv_updateScene(model, data, option, perturb, camera, mujoco.mjtCatBit.mjCAT_ALL, scene)
        np.testing.assert_allclose(camera.lookat, data.subtree_com[model.body("base_link").id], atol=1e-9)
        assert np.linalg.norm(np.array(camera.lookat[:2]) - [x, y]) < 0.1
