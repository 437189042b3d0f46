"""Ground-truth rows (core, no ROS): the layout a harness reads back."""

from __future__ import annotations

import numpy as np
import pytest

from spot_policy.core import contract
from spot_sim_bridge.core.ground_truth import FIELDS, WIDTH, GroundTruthBatch, split


def test_rows_hold_joints_in_isaac_order_whatever_the_simulators_order() -> None:
    isaac = list(contract.ISAAC_JOINT_ORDER)
    sim_order = isaac[::-1]  # a simulator listing its joints the other way round
    batch = GroundTruthBatch(2, sim_order)
    q = np.arange(12.0)  # q[i] belongs to sim_order[i]
    batch.add(20_000_000, (1, 2, 3), (0, 0, 0, 1), (0.5, 0, 0), (0, 0, 0.1), q, q + 100, q + 200, None)
    batch.add(40_000_000, (1, 2, 3), (0, 0, 0, 1), (0.5, 0, 0), (0, 0, 0.1), q, q, q, q + 300)
    assert batch.full
    rows = split(batch.take())
    assert batch.size == 0
    assert rows["t_ns"].tolist() == [20_000_000, 40_000_000] and rows["t_ns"].dtype == np.int64
    assert rows["q"][0].tolist() == [float(sim_order.index(j)) for j in isaac]
    assert rows["dq"][0][0] == 100 + sim_order.index(isaac[0]) and rows["tau"][0][0] == 200 + sim_order.index(isaac[0])
    assert np.isnan(rows["targets"][0]).all() and rows["targets"][1][0] == 300 + sim_order.index(isaac[0])
    assert rows["odom"][0].tolist() == [1, 2, 3, 0, 0, 0, 1, 0.5, 0, 0, 0, 0, 0.1]
    assert len(FIELDS) == WIDTH == 1 + 13 + 4 * 12 and FIELDS[14] == f"{isaac[0]}.position"


def test_bad_batches_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="at least one instant"):
        GroundTruthBatch(0, contract.ISAAC_JOINT_ORDER)
    with pytest.raises(ValueError, match="has no joint"):
        GroundTruthBatch(5, contract.ISAAC_JOINT_ORDER[:11])
    with pytest.raises(ValueError, match="not whole rows of 62"):
        split(np.zeros(WIDTH + 1))
