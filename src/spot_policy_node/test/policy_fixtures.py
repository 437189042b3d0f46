"""Test-made fixtures: an Isaac Lab run folder with env.yaml (Python tags and all) and an ONNX MLP."""

from __future__ import annotations

from pathlib import Path

from spot_policy.core.onnx_mlp import Layer, mlp_to_onnx, random_mlp

# The shape of an Isaac Lab 2.x dump of Isaac-Velocity-Flat-Spot-v0 (the keys a deployment reads,
# with the dumper's tags), abridged where a deployment reads nothing.
SPOT_FLAT_ENV_YAML = """\
viewer:
  eye: !!python/tuple
  - 7.5
  - 7.5
  - 7.5
  origin_type: world
sim:
  physics_prim_path: /physicsScene
  device: cuda:0
  dt: 0.002
  render_interval: 10
  gravity: !!python/tuple
  - 0.0
  - 0.0
  - -9.81
ui_window_class_type: isaaclab.envs.ui.manager_based_rl_env_window:ManagerBasedRLEnvWindow
seed: 42
decimation: 10
scene:
  num_envs: 4096
  env_spacing: 2.5
  robot:
    class_type: isaaclab.assets.articulation.articulation:Articulation
    prim_path: /World/envs/env_.*/Robot
    spawn:
      func: isaaclab.sim.spawners.from_files.from_files:spawn_from_usd
      usd_path: http://omniverse-content-production.invalid/Assets/Isaac/Robots/BostonDynamics/spot/spot.usd
    init_state:
      pos: !!python/tuple
      - 0.0
      - 0.0
      - 0.5
      rot: !!python/tuple
      - 1.0
      - 0.0
      - 0.0
      - 0.0
      joint_pos:
        '[fh]l_hx': 0.1
        '[fh]r_hx': -0.1
        f[rl]_hy: 0.9
        h[rl]_hy: 1.1
        .*_kn: -1.5
      joint_vel:
        .*: 0.0
    actuators:
      spot_hip:
        class_type: isaaclab.actuators.actuator_pd:DelayedPDActuator
        joint_names_expr:
        - .*_h[xy]
        effort_limit: 45.0
        velocity_limit: null
        stiffness: 60.0
        damping: 1.5
        armature: null
        min_delay: 0
        max_delay: 4
      spot_knee:
        class_type: isaaclab.actuators.actuator_pd:RemotizedPDActuator
        joint_names_expr:
        - .*_kn
        effort_limit: null
        velocity_limit: null
        stiffness: 60.0
        damping: 1.5
        joint_parameter_lookup:
        - - -2.792900
          - -24.776718
          - 37.165077
        - - -0.247100
          - -20.401667
          - 30.602500
observations:
  policy:
    concatenate_terms: true
    enable_corruption: false
    history_length: null
    flatten_history_dim: true
    base_lin_vel:
      func: isaaclab.envs.mdp.observations:base_lin_vel
      params: {}
      modifiers: null
      noise:
        func: isaaclab.utils.noise.noise_model:uniform_noise
        operation: add
        n_min: -0.1
        n_max: 0.1
      clip: null
      scale: null
      history_length: 0
      flatten_history_dim: true
    base_ang_vel:
      func: isaaclab.envs.mdp.observations:base_ang_vel
      params: {}
      modifiers: null
      noise:
        func: isaaclab.utils.noise.noise_model:uniform_noise
        operation: add
        n_min: -0.1
        n_max: 0.1
      clip: null
      scale: null
      history_length: 0
      flatten_history_dim: true
    projected_gravity:
      func: isaaclab.envs.mdp.observations:projected_gravity
      params: {}
      modifiers: null
      noise:
        func: isaaclab.utils.noise.noise_model:uniform_noise
        operation: add
        n_min: -0.05
        n_max: 0.05
      clip: null
      scale: null
      history_length: 0
      flatten_history_dim: true
    velocity_commands:
      func: isaaclab.envs.mdp.observations:generated_commands
      params:
        command_name: base_velocity
      modifiers: null
      noise: null
      clip: null
      scale: null
      history_length: 0
      flatten_history_dim: true
    joint_pos:
      func: isaaclab.envs.mdp.observations:joint_pos_rel
      params:
        asset_cfg:
          name: robot
          joint_names: null
          joint_ids: !!python/object/apply:builtins.slice
          - null
          - null
          - null
          fixed_tendon_names: null
          body_names: null
          body_ids: !!python/object/apply:builtins.slice
          - null
          - null
          - null
          preserve_order: false
      modifiers: null
      noise:
        func: isaaclab.utils.noise.noise_model:uniform_noise
        operation: add
        n_min: -0.05
        n_max: 0.05
      clip: null
      scale: null
      history_length: 0
      flatten_history_dim: true
    joint_vel:
      func: isaaclab.envs.mdp.observations:joint_vel_rel
      params:
        asset_cfg:
          name: robot
          joint_names: null
          joint_ids: !!python/object/apply:builtins.slice
          - null
          - null
          - null
          preserve_order: false
      modifiers: null
      noise:
        func: isaaclab.utils.noise.noise_model:uniform_noise
        operation: add
        n_min: -0.5
        n_max: 0.5
      clip: null
      scale: null
      history_length: 0
      flatten_history_dim: true
    actions:
      func: isaaclab.envs.mdp.observations:last_action
      params: {}
      modifiers: null
      noise: null
      clip: null
      scale: null
      history_length: 0
      flatten_history_dim: true
actions:
  joint_pos:
    class_type: isaaclab.envs.mdp.actions.joint_actions:JointPositionAction
    asset_name: robot
    debug_vis: false
    clip: null
    joint_names:
    - .*
    scale: 0.2
    offset: 0.0
    preserve_order: false
    use_default_offset: true
commands:
  base_velocity:
    class_type: isaaclab.envs.mdp.commands.velocity_command:UniformVelocityCommand
    resampling_time_range: !!python/tuple
    - 10.0
    - 10.0
    debug_vis: true
    asset_name: robot
    heading_command: false
    rel_standing_envs: 0.1
    ranges:
      lin_vel_x: !!python/tuple
      - -2.0
      - 3.0
      lin_vel_y: !!python/tuple
      - -1.5
      - 1.5
      ang_vel_z: !!python/tuple
      - -2.0
      - 2.0
      heading: null
rewards:
  air_time:
    func: isaaclab_tasks.manager_based.locomotion.velocity.config.spot.mdp.rewards:air_time_reward
    weight: 5.0
episode_length_s: 20.0
"""

AGENT_YAML = """\
seed: 42
device: cuda:0
num_steps_per_env: 24
max_iterations: 20000
empirical_normalization: false
clip_actions: null
experiment_name: spot_flat
policy:
  class_name: ActorCritic
  actor_hidden_dims:
  - 512
  - 256
  - 128
  activation: elu
"""

SPOT_SIZES = (48, 512, 256, 128, 12)


def make_run(
    root: Path,
    name: str = "2026-11-20_10-00-00",
    env_yaml: str = SPOT_FLAT_ENV_YAML,
    layers: list[Layer] | None = None,
    sizes: tuple[int, ...] = (48, 64, 12),
    seed: int = 0,
) -> Path:
    """A run folder as Isaac Lab leaves it after play.py; returns the run folder."""
    run = Path(root) / name
    (run / "params").mkdir(parents=True, exist_ok=True)
    (run / "params" / "env.yaml").write_text(env_yaml)
    (run / "params" / "agent.yaml").write_text(AGENT_YAML)
    (run / "model_100.pt").write_bytes(b"checkpoint placeholder: deployment never reads it")
    (run / "model_1500.pt").write_bytes(b"checkpoint placeholder: deployment never reads it")
    mlp_to_onnx(layers or random_mlp(sizes, seed=seed), run / "exported" / "policy.onnx")
    return run


def env_with_lin_vel_processing(clip: float = 1.0, scale: float = 2.0, history: int = 3) -> str:
    """The Spot flat env.yaml with clip, scale and history on its base_lin_vel term."""
    tail = "      flatten_history_dim: true\n    base_ang_vel:"
    plain = "      clip: null\n      scale: null\n      history_length: 0\n" + tail
    processed = (
        f"      clip: !!python/tuple\n      - {-clip}\n      - {clip}\n      scale: {scale}\n"
        f"      history_length: {history}\n" + tail
    )
    assert plain in SPOT_FLAT_ENV_YAML
    return SPOT_FLAT_ENV_YAML.replace(plain, processed, 1)
