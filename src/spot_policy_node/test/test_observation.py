"""The observation vector and the joint-name contract, against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from spot_policy.core import contract
from spot_policy.core.loader import load_policy
from spot_policy.core.observation import Measurements, ObservationBuilder, projected_gravity

from policy_fixtures import env_with_lin_vel_processing, make_run


def test_index_maps_match_the_facts() -> None:
    sdk_to_isaac = contract.index_map(contract.SDK_JOINT_ORDER, contract.ISAAC_JOINT_ORDER)
    isaac_to_sdk = contract.index_map(contract.ISAAC_JOINT_ORDER, contract.SDK_JOINT_ORDER)
    assert sdk_to_isaac == [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]
    assert isaac_to_sdk == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    values = np.arange(12.0)
    assert list(values[sdk_to_isaac][isaac_to_sdk]) == list(values)  # round trip


def test_joint_name_spellings() -> None:
    assert contract.sdk_name("fl_hx") == "fl.hx" and contract.from_sdk_name("hr.kn") == "hr_kn"
    assert contract.urdf_name("hl_hy") == "rear_left_hip_y"
    for joint in contract.ISAAC_JOINT_ORDER:
        for alias in (joint, contract.sdk_name(joint), contract.urdf_name(joint)):
            assert contract.canonical_joint_name(alias) == joint
    assert contract.canonical_joint_name("arm0.sh0") is None
    with pytest.raises(KeyError, match="missing joints: fl_kn"):
        contract.index_map(contract.ISAAC_JOINT_ORDER[:-4], ["fl_kn"])


def quat_xyzw(axis: tuple[float, float, float], angle: float) -> np.ndarray:
    s = math.sin(angle / 2)
    return np.array([axis[0] * s, axis[1] * s, axis[2] * s, math.cos(angle / 2)])


def test_projected_gravity() -> None:
    np.testing.assert_allclose(projected_gravity(np.array([0, 0, 0, 1.0])), [0, 0, -1], atol=1e-12)
    # Nose down by 30 deg (pitch +30 about y): gravity leans towards +x in the body frame.
    g = projected_gravity(quat_xyzw((0, 1, 0), math.radians(30)))
    np.testing.assert_allclose(g, [math.sin(math.radians(30)), 0, -math.cos(math.radians(30))], atol=1e-12)
    # Rolled left side up by 90 deg (+x): gravity along -y... body y axis now points down.
    np.testing.assert_allclose(projected_gravity(quat_xyzw((1, 0, 0), math.pi / 2)), [0, -1, 0], atol=1e-12)
    # Yaw leaves it unchanged; an unnormalised quaternion is normalised.
    np.testing.assert_allclose(projected_gravity(2 * quat_xyzw((0, 0, 1), 1.0)), [0, 0, -1], atol=1e-12)


def test_known_state_gives_hand_computed_vector(tmp_path: Path) -> None:
    spec = load_policy(make_run(tmp_path), providers=["cpu"]).spec
    builder = ObservationBuilder(spec)
    q = spec.default_joint_pos + np.linspace(-0.11, 0.11, 12)
    m = Measurements(
        base_lin_vel=np.array([0.5, -0.1, 0.02]),
        base_ang_vel=np.array([0.01, 0.02, 0.3]),
        gravity=projected_gravity(quat_xyzw((0, 1, 0), math.radians(30))),
        command=np.array([0.5, 0.0, 0.3]),
        joint_pos=q,
        joint_vel=np.arange(12) * 0.1,
    )
    last = np.linspace(-1, 1, 12).astype(np.float32)
    obs = builder.build(m, last)
    expected = np.concatenate(
        [
            [0.5, -0.1, 0.02],
            [0.01, 0.02, 0.3],
            [0.5, 0.0, -math.sqrt(3) / 2],
            [0.5, 0.0, 0.3],
            np.linspace(-0.11, 0.11, 12),
            np.arange(12) * 0.1,
            np.linspace(-1, 1, 12),
        ]
    )
    assert obs.dtype == np.float32 and obs.shape == (48,)
    np.testing.assert_allclose(obs, expected, atol=1e-6)


def test_built_into_the_policys_input_buffer_runs_without_a_copy(tmp_path: Path) -> None:
    loaded = load_policy(make_run(tmp_path), providers=["cpu"])
    spec, policy = loaded.spec, loaded.model
    m = Measurements(command=np.array([0.5, 0.0, 0.3]), joint_pos=spec.default_joint_pos + 0.05)
    last = np.linspace(-1, 1, 12).astype(np.float32)
    own = ObservationBuilder(spec).build(m, last).copy()
    into = ObservationBuilder(spec, out=policy.input_buffer)
    obs = into.build(m, last)
    assert obs is policy.input_buffer
    np.testing.assert_array_equal(obs, own)
    np.testing.assert_array_equal(policy(obs), policy(own))  # the same answer with or without the copy
    with pytest.raises(ValueError, match=r"must be float32 \(48,\)"):
        ObservationBuilder(spec, out=np.zeros(48))


def test_clip_before_scale_and_history_oldest_first(tmp_path: Path) -> None:
    text = env_with_lin_vel_processing()
    spec = load_policy(make_run(tmp_path, env_yaml=text, sizes=(54, 8, 12)), providers=["cpu"]).spec
    builder = ObservationBuilder(spec)
    zero = np.zeros(12, dtype=np.float32)
    obs = builder.build(Measurements(base_lin_vel=np.array([3.0, 0.25, -0.5])), zero).copy()
    # Isaac Lab clips, then scales: 3.0 -> 1.0 -> 2.0. History starts filled with the first value.
    np.testing.assert_allclose(obs[0:9], [2.0, 0.5, -1.0] * 3)
    obs = builder.build(Measurements(base_lin_vel=np.array([0.1, 0.2, 0.3])), zero).copy()
    np.testing.assert_allclose(obs[0:9], [2.0, 0.5, -1.0, 2.0, 0.5, -1.0, 0.2, 0.4, 0.6], atol=1e-6)
    obs = builder.build(Measurements(base_lin_vel=np.array([0.0, 0.0, 0.0])), zero).copy()
    np.testing.assert_allclose(obs[0:9], [2.0, 0.5, -1.0, 0.2, 0.4, 0.6, 0, 0, 0], atol=1e-6)
    builder.reset()
    obs = builder.build(Measurements(base_lin_vel=np.array([0.1, 0.1, 0.1])), zero)
    np.testing.assert_allclose(obs[0:9], [0.2] * 9, atol=1e-6)
    assert obs[9:12].tolist() == [0, 0, 0]  # base_ang_vel follows the 9 history values
