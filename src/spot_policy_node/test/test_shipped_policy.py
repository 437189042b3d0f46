"""The shipped policy (config/policies/spot_flat_mjx) loads like an Isaac Lab run and is the trained network.

``exported/actor_weights.npz`` holds the actor as brax trained it (observation normalizer kept
separate); ``exported/policy.onnx`` has the normalizer folded into its first layer. Agreement on
random inputs proves the export; no JAX needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spot_policy.core import contract
from spot_policy.core.isaaclab_yaml import load_isaaclab_yaml
from spot_policy.core.loader import load_policy
from spot_policy.core.onnx_mlp import mlp_forward

POLICY_DIR = Path(__file__).resolve().parents[3] / "config" / "policies" / "spot_flat_mjx"
OBS_FUNCS = (
    "base_lin_vel",
    "base_ang_vel",
    "projected_gravity",
    "generated_commands",
    "joint_pos_rel",
    "joint_vel_rel",
    "last_action",
)


@pytest.fixture(scope="module")
def loaded():
    return load_policy(POLICY_DIR, providers=("cpu",), log=lambda _msg: None)


def trained_actor(obs: np.ndarray) -> np.ndarray:
    """The network as trained: (obs - mean) / std, then ELU MLP with a linear output."""
    with np.load(POLICY_DIR / "exported" / "actor_weights.npz") as data:
        n = sum(1 for k in data.files if k.startswith("w"))
        layers = [(data[f"w{i}"], data[f"b{i}"]) for i in range(n)]
        normalized = (obs.astype(np.float32) - data["obs_mean"]) / data["obs_std"]
    return mlp_forward(layers, normalized)


def test_loads_as_an_isaac_lab_run(loaded) -> None:
    spec = loaded.spec
    assert spec.obs_dim == 48 and spec.action_dim == 12
    assert [t.func for t in spec.obs_terms] == list(OBS_FUNCS)
    assert loaded.model.input_names == ("obs",) and loaded.model.output_names == ("actions",)
    assert tuple(loaded.model.input_shape) == (1, 48) and tuple(loaded.model.output_shape) == (1, 12)
    assert spec.joint_names == contract.ISAAC_JOINT_ORDER


def test_env_yaml_values(loaded) -> None:
    spec = loaded.spec
    assert spec.physics_dt == pytest.approx(0.002)
    assert spec.decimation == 10
    assert spec.control_rate_hz == pytest.approx(50.0)
    np.testing.assert_allclose(spec.action.scale, 0.2)
    np.testing.assert_allclose(spec.stiffness, 60.0)
    np.testing.assert_allclose(spec.damping, 1.5)
    hips = [j for j in spec.joint_names if not j.endswith("_kn")]
    limits = dict(zip(spec.joint_names, spec.effort_limit, strict=True))
    assert all(limits[j] == 45.0 for j in hips) and all(limits[j] is None for j in spec.joint_names if j not in hips)
    default = dict(zip(spec.joint_names, spec.default_joint_pos, strict=True))
    assert default["fl_hx"] == pytest.approx(0.1) and default["hr_hx"] == pytest.approx(-0.1)
    assert default["fr_hy"] == pytest.approx(0.9) and default["hl_hy"] == pytest.approx(1.1)
    assert default["hr_kn"] == pytest.approx(-1.5)
    np.testing.assert_allclose(spec.action.offset, spec.default_joint_pos)
    ranges = spec.command_ranges
    assert ranges["lin_vel_x"][0] <= -1.0 and ranges["lin_vel_x"][1] >= 2.0
    assert ranges["lin_vel_y"][0] <= -1.0 and ranges["lin_vel_y"][1] >= 1.0
    assert ranges["ang_vel_z"][0] <= -1.5 and ranges["ang_vel_z"][1] >= 1.5


def test_env_yaml_has_isaac_lab_python_tags() -> None:
    text = (POLICY_DIR / "params" / "env.yaml").read_text()
    assert "!!python/tuple" in text and "!!python/object/apply:builtins.slice" in text
    env = load_isaaclab_yaml(POLICY_DIR / "params" / "env.yaml")
    assert env["commands"]["base_velocity"]["ranges"]["lin_vel_x"] == (-1.0, 2.0)
    assert load_isaaclab_yaml(POLICY_DIR / "params" / "agent.yaml")["policy"]["actor_hidden_dims"] == [512, 256, 128]


def test_onnx_equals_trained_network(loaded) -> None:
    with np.load(POLICY_DIR / "exported" / "actor_weights.npz") as data:
        mean, std = data["obs_mean"], data["obs_std"]
    rng = np.random.default_rng(7)
    # Inputs around what the policy sees (mean +- 3 std) and plain unit-normal vectors.
    obs = np.concatenate(
        [
            mean + std * rng.uniform(-3.0, 3.0, size=(50, 48)),
            rng.standard_normal((50, 48)),
        ]
    ).astype(np.float32)
    expected = trained_actor(obs)
    got = np.stack([loaded.model(o) for o in obs])
    assert got.shape == (100, 12)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
