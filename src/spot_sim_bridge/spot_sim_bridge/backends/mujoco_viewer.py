"""The MuJoCo viewer's camera for ``--gui``: it follows Spot instead of staying where Spot started."""

from __future__ import annotations

import mujoco

#: Spot's root body in spot.xml; the camera tracks its subtree (the whole robot).
TRACKED_BODY = "base_link"


def follow_robot(camera: mujoco.MjvCamera, model: mujoco.MjModel, body: str = TRACKED_BODY) -> None:
    """Make ``camera`` (the viewer's) track ``body`` from behind and to the left, slightly above."""
    camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
    camera.trackbodyid = model.body(body).id
    camera.fixedcamid = -1
    camera.distance = 2.5
    camera.azimuth = 135.0
    camera.elevation = -20.0
