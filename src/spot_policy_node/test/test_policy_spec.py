"""Loading a policy from an Isaac Lab run folder, and every way that can fail."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from spot_policy.core import contract
from spot_policy.core.errors import PolicyLoadError
from spot_policy.core.isaaclab_yaml import PythonTag, load_isaaclab_yaml
from spot_policy.core.loader import load_policy
from spot_policy.core.locate import locate_run
from spot_policy.core.onnx_mlp import mlp_to_onnx, random_mlp

from policy_fixtures import SPOT_FLAT_ENV_YAML, env_with_lin_vel_processing, make_run


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "logs")


def load_error(target: str | Path, **kwargs) -> str:
    with pytest.raises(PolicyLoadError) as info:
        load_policy(target, providers=["cpu"], **kwargs)
    message = str(info.value)
    assert "\n" not in message and "; fix: " in message, message
    return message


def test_yaml_tags_load_as_data_without_executing(tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text(
        SPOT_FLAT_ENV_YAML
        + "danger: !!python/object/apply:os.system ['touch "
        + str(tmp_path / "pwned")
        + "']\n"
        + "ref: !!python/name:builtins.print ''\n"
    )
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load(path.read_text())
    env = load_isaaclab_yaml(path)
    assert env["viewer"]["eye"] == (7.5, 7.5, 7.5)
    joint_ids = env["observations"]["policy"]["joint_pos"]["params"]["asset_cfg"]["joint_ids"]
    assert joint_ids == PythonTag("object/apply:builtins.slice", [None, None, None])
    assert isinstance(env["danger"], PythonTag) and env["ref"] == "builtins.print"
    assert not (tmp_path / "pwned").exists()


def test_spot_flat_spec(run: Path) -> None:
    loaded = load_policy(run, providers=["cpu"])
    spec = loaded.spec
    assert [(t.func, t.start, t.stop) for t in spec.obs_terms] == [
        ("base_lin_vel", 0, 3),
        ("base_ang_vel", 3, 6),
        ("projected_gravity", 6, 9),
        ("generated_commands", 9, 12),
        ("joint_pos_rel", 12, 24),
        ("joint_vel_rel", 24, 36),
        ("last_action", 36, 48),
    ]
    assert spec.obs_dim == 48 and spec.action_dim == 12
    assert spec.joint_names == contract.ISAAC_JOINT_ORDER
    expected_default = {"hx": (0.1, -0.1), "hy": (0.9, 1.1), "kn": (-1.5, -1.5)}
    for j, value in zip(spec.joint_names, spec.default_joint_pos, strict=True):
        leg, kind = j.split("_")
        if kind == "hx":
            assert value == pytest.approx(0.1 if leg.endswith("l") else -0.1)
        elif kind == "hy":
            assert value == pytest.approx(0.9 if leg.startswith("f") else 1.1)
        else:
            assert value == pytest.approx(expected_default["kn"][0])
    np.testing.assert_allclose(spec.stiffness, 60.0)
    np.testing.assert_allclose(spec.damping, 1.5)
    assert [spec.effort_limit[i] for i in range(12)] == [45.0] * 8 + [None] * 4
    np.testing.assert_allclose(spec.action.scale, 0.2)
    np.testing.assert_allclose(spec.action.offset, spec.default_joint_pos)
    assert spec.command_ranges == {"lin_vel_x": (-2.0, 3.0), "lin_vel_y": (-1.5, 1.5), "ang_vel_z": (-2.0, 2.0)}
    assert spec.physics_dt == 0.002 and spec.decimation == 10
    assert spec.control_rate_hz == pytest.approx(50.0)
    assert loaded.model.input_names == ("obs",) and loaded.model.output_names == ("actions",)
    assert loaded.model.provider == "CPUExecutionProvider"
    assert loaded.files.newest_checkpoint.name == "model_1500.pt"


def test_isaaclab_1x_module_paths_and_regex_dict_gains(tmp_path: Path) -> None:
    text = SPOT_FLAT_ENV_YAML.replace("isaaclab.envs.mdp", "omni.isaac.lab.envs.mdp").replace(
        "        stiffness: 60.0\n        damping: 1.5\n        armature",
        "        stiffness:\n          .*_hx: 55.0\n          .*_hy: 65.0\n        damping: 1.5\n        armature",
    )
    spec = load_policy(make_run(tmp_path, env_yaml=text), providers=["cpu"]).spec
    kinds = [j.split("_")[1] for j in spec.joint_names]
    assert [s for s, k in zip(spec.stiffness, kinds, strict=True) if k == "hx"] == [55.0] * 4
    assert [s for s, k in zip(spec.stiffness, kinds, strict=True) if k == "hy"] == [65.0] * 4
    assert [s for s, k in zip(spec.stiffness, kinds, strict=True) if k == "kn"] == [60.0] * 4


def test_scale_clip_history_and_explicit_joint_order(tmp_path: Path) -> None:
    text = env_with_lin_vel_processing()
    names = "\n".join(f"    - {j}" for j in contract.SDK_JOINT_ORDER)
    text = text.replace("    joint_names:\n    - .*\n    scale: 0.2", f"    joint_names:\n{names}\n    scale: 0.2")
    text = text.replace(
        "    preserve_order: false\n    use_default_offset", "    preserve_order: true\n    use_default_offset"
    )
    run = make_run(tmp_path, env_yaml=text, sizes=(54, 16, 12))
    spec = load_policy(run, providers=["cpu"]).spec
    lin = spec.obs_terms[0]
    assert (lin.history, lin.clip, lin.start, lin.stop) == (3, (-1.0, 1.0), 0, 9)
    np.testing.assert_allclose(lin.scale, [2.0, 2.0, 2.0])
    assert spec.obs_dim == 54
    assert spec.action.joint_names == contract.SDK_JOINT_ORDER


def test_run_folder_onnx_file_and_latest(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "rsl_rl" / "spot_flat"
    older = make_run(logs, "2026-11-01_09-00-00")
    newer = make_run(logs, "2026-11-20_18-30-00_long")
    assert locate_run(older).run_dir == older
    assert locate_run(older / "exported" / "policy.onnx").run_dir == older
    assert locate_run("latest", logs_root=logs).run_dir == newer
    policies = tmp_path / "policies"
    shipped = make_run(policies, "spot_flat_test")
    assert locate_run("spot_flat_test", policies_dir=policies).run_dir == shipped


def test_missing_files(tmp_path: Path) -> None:
    assert "no such run folder" in load_error(tmp_path / "nope")
    run = make_run(tmp_path)
    (run / "exported" / "policy.onnx").unlink()
    message = load_error(run)
    assert "policy.onnx: file not found (newest checkpoint: model_1500.pt)" in message and "play.py" in message
    run2 = make_run(tmp_path, "2026-11-21_00-00-00")
    (run2 / "params" / "env.yaml").unlink()
    assert "env.yaml: file not found" in load_error(run2 / "exported" / "policy.onnx")
    (tmp_path / "empty").mkdir()
    assert "no run folders named <YYYY-MM-DD_HH-MM-SS>" in load_error("latest", logs_root=tmp_path / "empty")
    assert "logs root not found" in load_error("latest", logs_root=tmp_path / "absent")


def test_bad_yaml(tmp_path: Path) -> None:
    run = make_run(tmp_path, env_yaml="sim:\n  dt: 0.002\n decimation: [10\n")
    message = load_error(run)
    assert "env.yaml: is not valid YAML at line" in message


def test_missing_key(tmp_path: Path) -> None:
    run = make_run(tmp_path, env_yaml=SPOT_FLAT_ENV_YAML.replace("decimation: 10\n", ""))
    assert "key 'decimation' is missing" in load_error(run)


def test_unknown_observation_term(tmp_path: Path) -> None:
    text = SPOT_FLAT_ENV_YAML.replace(
        "    actions:\n      func: isaaclab.envs.mdp.observations:last_action",
        "    height_scan:\n      func: isaaclab.envs.mdp.observations:height_scan\n      params: {}\n"
        "    actions:\n      func: isaaclab.envs.mdp.observations:last_action",
    )
    message = load_error(make_run(tmp_path, env_yaml=text))
    assert (
        "observation term 'height_scan' (func isaaclab.envs.mdp.observations:height_scan) is not supported" in message
    )
    assert "base_lin_vel, base_ang_vel, projected_gravity, generated_commands" in message


def test_dimension_mismatch(tmp_path: Path) -> None:
    message = load_error(make_run(tmp_path, sizes=(45, 16, 12)))
    assert "input 'obs' [1, 45] takes 45 values but env.yaml's observation terms give 48" in message
    message = load_error(make_run(tmp_path, "2026-11-21_00-00-00", sizes=(48, 16, 19)))
    assert "gives 19 values but the action drives 12 joints" in message


def test_joint_names_not_spot(tmp_path: Path) -> None:
    text = SPOT_FLAT_ENV_YAML.replace(
        "    joint_names:\n    - .*\n", "    joint_names:\n    - FL_hip_joint\n    - .*\n"
    )
    message = load_error(make_run(tmp_path, env_yaml=text))
    assert "actions.joint_pos.joint_names names joints that are not Spot's: FL_hip_joint" in message
    text = SPOT_FLAT_ENV_YAML.replace("        .*_kn: -1.5", "        .*_calf_joint: -1.5")
    message = load_error(make_run(tmp_path, "2026-11-21_00-00-00", env_yaml=text))
    assert "'.*_calf_joint' matches none of Spot's joints" in message


def test_unsupported_action_and_corrupt_onnx(tmp_path: Path) -> None:
    text = SPOT_FLAT_ENV_YAML.replace("joint_actions:JointPositionAction", "joint_actions:JointEffortAction")
    assert "action term 'joint_pos' (class" in load_error(make_run(tmp_path, env_yaml=text))
    run = make_run(tmp_path, "2026-11-21_00-00-00")
    (run / "exported" / "policy.onnx").write_bytes(b"not a model")
    assert "ONNX Runtime cannot load it" in load_error(run)


def test_latest_prefers_newest_name_not_mtime(tmp_path: Path) -> None:
    logs = tmp_path / "spot_flat"
    newer = make_run(logs, "2026-11-20_18-30-00")
    older = make_run(logs, "2025-01-01_00-00-00")
    os.utime(older, (time.time() + 100, time.time() + 100))
    assert locate_run("latest", logs_root=logs).run_dir == newer


def test_onnx_mlp_matches_numpy_reference(tmp_path: Path) -> None:
    layers = random_mlp((48, 32, 12), seed=3)
    path = mlp_to_onnx(layers, tmp_path / "p.onnx")
    from spot_policy.core.onnx_mlp import mlp_forward
    from spot_policy.core.onnx_policy import OnnxPolicy

    policy = OnnxPolicy(path, ["cpu"])
    obs = np.random.default_rng(0).standard_normal(48).astype(np.float32)
    np.testing.assert_allclose(policy(obs), mlp_forward(layers, obs), atol=1e-5)
