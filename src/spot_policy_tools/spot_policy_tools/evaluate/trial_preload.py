"""Imported once by the fork server that runs evaluation trials (:func:`.runner.run_local`): a
trial's own one-off work, done before the fork instead of in every trial process.

After a trial, scoring it parsed Spot's MJCF for the foot kinematics and, on the first
``np.median``, imported ``numpy.ma`` (numpy loads it lazily): 15-25 ms of CPU per trial, which
on two cores the other worker's trial waits for. Neither starts a thread, so the server stays
safe to fork; the nodes' own preload is :mod:`spot_policy_tools.node_preload`.
"""

from __future__ import annotations

import numpy.ma  # noqa: F401  (imported for its side effect: np.median's lazy import, done here)

from spot_policy_tools.evaluate.trial_data import foot_kinematics

foot_kinematics()
