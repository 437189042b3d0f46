"""Isaac Sim backend (5.x and 6.x): Spot from Isaac Sim's own robot assets, headless, 500 Hz PhysX.

Everything that can be decided without Isaac Sim lives in modules that are unit-tested on any
machine: ``isaac_release`` (which Isaac Sim, which Python), ``isaac_app`` (Kit's command line,
signal handlers and shutdown), ``isaac_scene`` (the physics scene from the policy's env.yaml) and
``isaac_conversions`` (joint mapping, frames, the PD law). This module only makes the calls into
Isaac Sim. ``isaacsim`` is imported lazily, on the first :class:`IsaacSpot`, because importing it
needs Isaac Sim installed and starts the Omniverse Kit runtime. **This module has never run**:
Isaac Sim cannot be installed on this project's machines. Every call below was checked against
Isaac Sim's source at tags v5.1.0 and v6.0.1 (docs/ISAAC_SIM.md has the table with file:line);
``test/test_backend_conformance.py`` runs it wherever ``isaacsim`` imports.

API: the ``isaacsim.core.api`` / ``isaacsim.core.prims`` / ``isaacsim.core.utils`` extensions. They are
current in 5.x; 6.0 deprecates them in favour of ``isaacsim.core.experimental.*`` but still ships and
loads them in its default Python experience (v6.0.1 ``source/apps/isaacsim.exp.base.kit``, dependency
``isaacsim.core.api``), so one code path serves both lines. What differs between the lines is chosen
by the detected major version: the Python (3.11 / 3.12), the interface that flushes USD edits into
PhysX (``omni.physx`` / ``omni.physics.core``) and the stabilization setter's name.

PD: explicit, in Python, like ``MujocoSpot`` and like Isaac Lab's Spot actuators (a delayed PD for
the hips, a "remotized" PD with the angle-dependent torque table for the knees). Isaac Lab trains
those as *explicit* actuators: it computes the torque itself and writes it as a joint effort with
the PhysX drives' stiffness and damping at zero. The drives are therefore zeroed and
:class:`~spot_sim_bridge.backends.isaac_conversions.SpotPD` computes the torque every physics step;
the drives' max effort is set to each joint's highest possible torque as a ceiling only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from spot_policy.core import contract
from spot_sim_bridge.backends import isaac_app, isaac_release
from spot_sim_bridge.backends import isaac_conversions as conv
from spot_sim_bridge.backends.isaac_release import isaac_unavailable_reason
from spot_sim_bridge.backends.isaac_scene import (
    FRICTION_COMBINE_MODE,
    GROUND_FRICTION,
    RESTITUTION_COMBINE_MODE,
    SceneSettings,
    load_scene_settings,
)
from spot_sim_bridge.core.backend import (
    ISAAC_KD,
    ISAAC_KP,
    BackendBase,
    BackendUnavailable,
    RobotState,
    Vec,
    default_joint_pos_array,
)

__all__ = ["IsaacSpot", "close_app", "isaac_unavailable_reason", "require_isaacsim", "resolve_usd_path"]

#: Spot in Isaac Sim's own robot assets, relative to the assets root (``get_assets_root_path()``);
#: the same path in 5.1 and 6.0 (Isaac Sim's ``robots/spot.py``, v6.0.1 L58) and in Isaac Lab's ``SPOT_CFG``.
DEFAULT_SPOT_USD = "/Isaac/Robots/BostonDynamics/spot/spot.usd"
#: Overrides the default USD when no path is given (the bridge's ``asset_path`` parameter wins).
USD_PATH_ENV = "SPOT_ISAAC_USD"
#: The base link's name in Isaac Sim's and Isaac Lab's Spot (``body_names="body"`` in Isaac Lab).
BASE_LINK = "body"
#: Dropped from this high above touchdown at reset: absorbs small differences between the USD's
#: legs and SPOT.md's kinematics instead of starting in penetration.
RESET_CLEARANCE_M = 0.01
#: Multi-physics assets (6.x) carry a "Physics" variant set; this backend runs PhysX.
PHYSICS_VARIANT_SET, PHYSX_VARIANT = "Physics", "physx"

_isaac: SimpleNamespace | None = None  # the lazily imported Isaac Sim API


def require_isaacsim() -> None:
    """Raise :class:`BackendUnavailable` (one line: what to install) unless Isaac Sim 5.x/6.x can load."""
    reason = isaac_unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(reason)


def _major_version(found: isaac_release.IsaacSimInstall | None) -> int:
    """The release line: from the files read before Kit started, else from Kit itself."""
    if found is not None and found.numbers is not None:
        return found.numbers[0]
    from isaacsim.core.version import get_version  # (core, prerelease, major, ...) from Kit's VERSION file

    major = str(get_version()[2])
    if not major.isdigit() or int(major) not in isaac_release.LINES:
        raise BackendUnavailable(
            f"cannot tell which Isaac Sim this is (isaacsim.core.version reports major {major!r}); backend 'isaac' "
            "supports 5.x and 6.x (docs/ISAAC_SIM.md)"
        )
    return int(major)


def _load_isaac(headless: bool) -> SimpleNamespace:
    """Start Kit once per process (``SimulationApp``), then import the API it makes importable."""
    global _isaac
    if _isaac is not None:
        return _isaac
    require_isaacsim()
    found = isaac_release.find_isaac_sim()
    try:
        from isaacsim import SimulationApp  # bootstraps the Kit kernel (and may ask for the EULA)
    except SystemExit as exc:
        raise BackendUnavailable(
            f"importing isaacsim ended with status {exc.code} (its output above says why; if it asked for the EULA: "
            "export OMNI_KIT_ACCEPT_EULA=YES after reading it); run 'spot-policy doctor --backend isaac'"
        ) from None
    app = isaac_app.start_simulation_app(SimulationApp, headless)
    major = _major_version(found)
    # Only importable once the SimulationApp exists.
    from isaacsim.core.api import World
    from isaacsim.core.api.materials import PhysicsMaterial
    from isaacsim.core.api.objects import GroundPlane
    from isaacsim.core.prims import Articulation, SingleArticulation
    from isaacsim.core.utils.stage import add_reference_to_stage, create_new_stage
    from isaacsim.storage.native import get_assets_root_path
    from pxr import PhysxSchema, Usd, UsdPhysics, UsdShade

    if major >= 6:
        from omni.physics.core import get_physics_simulation_interface as simulation_interface
    else:
        from omni.physx import get_physx_simulation_interface as simulation_interface

    _isaac = SimpleNamespace(
        app=app,
        major=major,
        headless=headless,
        World=World,
        PhysicsMaterial=PhysicsMaterial,
        GroundPlane=GroundPlane,
        Articulation=Articulation,
        SingleArticulation=SingleArticulation,
        add_reference_to_stage=add_reference_to_stage,
        create_new_stage=create_new_stage,
        get_assets_root_path=get_assets_root_path,
        simulation_interface=simulation_interface,
        PhysxSchema=PhysxSchema,
        Usd=Usd,
        UsdPhysics=UsdPhysics,
        UsdShade=UsdShade,
    )
    return _isaac


def close_app() -> None:
    """Shut Kit down now (it is also closed at interpreter exit); a later backend cannot start Kit again."""
    global _isaac
    _isaac = None
    isaac_app.close_simulation_app()


def resolve_usd_path(usd_path: str | None, assets_root: Callable[[], str]) -> str:
    """The Spot USD to load: the given path, else ``$SPOT_ISAAC_USD``, else the assets root's Spot.

    ``assets_root`` (Isaac Sim's ``get_assets_root_path``) is asked only when no path is given: it
    raises ``RuntimeError`` when no asset server answers (v5.1.0 ``nucleus.py:483-496``, v6.0.1
    L578-590), which becomes :class:`BackendUnavailable` naming the fix. A local path that is not a
    file is refused here (Isaac Sim's ``add_reference_to_stage`` only logs an unreadable layer).
    """
    chosen = usd_path or os.environ.get(USD_PATH_ENV)
    if chosen:
        if "://" not in chosen and not Path(chosen).is_file():
            raise BackendUnavailable(
                f"the Spot USD {chosen} does not exist (from the bridge's asset_path parameter or ${USD_PATH_ENV}); "
                "fix: give the path of a local spot.usd, or leave both empty to load Spot from Isaac Sim's assets"
            )
        return chosen
    try:
        root = assets_root()
    except RuntimeError as exc:
        raise BackendUnavailable(
            f"Isaac Sim's assets root is not reachable ({exc}), so the default Spot USD ({DEFAULT_SPOT_USD}) cannot "
            f"be loaded; fix: set the bridge's asset_path parameter (or ${USD_PATH_ENV}) to a local copy of spot.usd"
        ) from None
    return str(root).rstrip("/") + DEFAULT_SPOT_USD


class IsaacSpot(BackendBase):
    """Spot in Isaac Sim behind the :class:`~spot_sim_bridge.core.backend.SimBackend` interface.

    One per process: Kit holds one stage, and a new instance replaces the previous one's stage.
    ``env_yaml``: the policy's ``params/env.yaml``, whose physics scene and spawn settings are used
    (``isaac_scene``); without it (or for settings it lacks) Isaac Lab's Spot task defaults.
    """

    #: PhysX replays identically only from an identically built scene; a reset teleports the robot
    #: in the running scene (contact and solver caches survive it) and a second instance cannot
    #: coexist with the first, so lockstep replays are not promised.
    deterministic = False

    def __init__(
        self,
        *,
        physics_dt: float = 0.002,
        kp: float | np.ndarray = ISAAC_KP,
        kd: float | np.ndarray = ISAAC_KD,
        friction: float = 0.8,
        payload_kg: float = 0.0,
        command_delay_steps: int = 0,
        usd_path: str | None = None,
        env_yaml: str | Path | None = None,
        prim_path: str = "/World/Spot",
        headless: bool = True,
    ) -> None:
        if not physics_dt > 0.0:
            raise ValueError(f"physics_dt must be > 0, got {physics_dt}")
        mu = conv.checked_friction(friction)
        self.scene_settings: SceneSettings = load_scene_settings(env_yaml)  # ValueError before Kit starts
        isaac = _load_isaac(headless)
        self._isaac = isaac
        self._dt = float(physics_dt)
        self._pd = conv.SpotPD(kp, kd)
        self._joint_names = contract.ISAAC_JOINT_ORDER

        # A fresh stage and World each time (World is a process-wide singleton).
        isaac.World.clear_instance()
        isaac.create_new_stage()
        # Physics only is stepped; rendering (GUI) refreshes at the control period.
        self._world = world = isaac.World(
            physics_dt=self._dt, rendering_dt=10 * self._dt, stage_units_in_meters=1.0, backend="numpy"
        )
        self._apply_scene(world.get_physics_context(), self.scene_settings)
        # Isaac Lab's Spot task: ground 1.0 "multiply", the robot's material with the contact's
        # coefficient, also "multiply": the contact gets exactly ``friction``.
        ground = self._material("/World/Materials/ground", GROUND_FRICTION)
        self._robot_material = self._material("/World/Materials/spot", mu)
        world.scene.add(isaac.GroundPlane(prim_path="/World/GroundPlane", z_position=0.0, physics_material=ground))

        self.usd_path = resolve_usd_path(usd_path, isaac.get_assets_root_path)
        stage_prim = isaac.add_reference_to_stage(usd_path=self.usd_path, prim_path=prim_path)
        if not stage_prim.GetChildren():
            raise BackendUnavailable(
                f"the Spot USD {self.usd_path} did not load (nothing under {prim_path}); fix: check that the path or "
                "URL is right and reachable (spot-policy doctor --backend isaac)"
            )
        self._select_physx_variant(stage_prim)
        # Bound on the referenced prim, stronger than the USD's own bindings on its links (USD
        # material binding with the "physics" purpose, which PhysX reads).
        isaac.UsdShade.MaterialBindingAPI.Apply(stage_prim).Bind(
            self._robot_material.material, isaac.UsdShade.Tokens.strongerThanDescendants, "physics"
        )
        self._apply_spawn_properties(stage_prim, self.scene_settings)
        robot = isaac.SingleArticulation(prim_path=prim_path, name="spot")
        self._robot = world.scene.add(robot)
        # The articulation view's body-mass API for the payload (a public view of the same articulation).
        self._bodies = world.scene.add(
            isaac.Articulation(prim_paths_expr=prim_path, name="spot_bodies", reset_xform_properties=False)
        )
        world.reset()  # starts the timeline and initializes the physics handles
        self._flush()  # USD writes reach PhysX now, not after the tensor writes below (Fabric delegate)

        self.dof_names: tuple[str, ...] = tuple(str(name) for name in robot.dof_names)
        self._dofs = conv.leg_dof_indices(list(self.dof_names))
        self._n_dof = int(robot.num_dof)
        controller = robot.get_articulation_controller()
        stiffness, damping = controller.get_gains()
        stiffness, damping = conv.drive_gains_for_explicit_pd(stiffness, damping, self._dofs)
        controller.set_gains(kps=stiffness, kds=damping)
        controller.set_max_efforts(self._pd.max_effort, joint_indices=self._dofs)
        try:
            self._base_index = int(self._bodies.get_body_index(BASE_LINK))
        except KeyError:
            raise BackendUnavailable(
                f"the Spot USD {self.usd_path} has no link named {BASE_LINK!r} (links: {self._bodies.body_names}); "
                "fix: use Isaac Sim's or Isaac Lab's Spot, whose base link is 'body'"
            ) from None
        self._base_mass0 = self._base_mass()

        self._steps = 0
        self._tau = np.zeros(len(self._joint_names))
        self._imu = np.zeros(3)
        self.set_payload(payload_kg)
        self.set_command_delay(command_delay_steps)
        self.reset()

    # --- building the scene --------------------------------------------------------------------

    def _flush(self) -> None:
        """Push pending USD edits into PhysX (Isaac Sim's policy controller does the same, 5.1 L110/L123)."""
        self._isaac.simulation_interface().flush_changes()

    def _apply_scene(self, physics: Any, scene: SceneSettings) -> None:
        """Isaac Lab's PhysX scene settings (``PhysicsContext`` setters, written to the physics scene prim)."""
        physics.set_gravity(scene.gravity_z)
        physics.set_solver_type(scene.solver_type)
        physics.enable_ccd(scene.enable_ccd)
        if self._isaac.major >= 6:
            physics.enable_stabilization(scene.enable_stabilization)
        else:
            physics.enable_stablization(scene.enable_stabilization)  # (sic) the 5.x name
        physics.set_bounce_threshold(scene.bounce_threshold_velocity)
        physics.set_friction_offset_threshold(scene.friction_offset_threshold)
        physics.set_friction_correlation_distance(scene.friction_correlation_distance)

    def _material(self, prim_path: str, mu: float) -> Any:
        isaac = self._isaac
        material = isaac.PhysicsMaterial(prim_path=prim_path, static_friction=mu, dynamic_friction=mu, restitution=0.0)
        physx = isaac.PhysxSchema.PhysxMaterialAPI.Apply(material.prim)
        physx.CreateFrictionCombineModeAttr().Set(FRICTION_COMBINE_MODE)
        physx.CreateRestitutionCombineModeAttr().Set(RESTITUTION_COMBINE_MODE)
        return material

    def _select_physx_variant(self, prim: Any) -> None:
        """Pick the PhysX variant of a multi-physics asset (what Isaac Sim's 6.0 policy controller does)."""
        sets = prim.GetVariantSets()
        if PHYSICS_VARIANT_SET not in sets.GetNames():
            return
        variants = sets.GetVariantSet(PHYSICS_VARIANT_SET)
        names = list(variants.GetVariantNames())
        for name in names:
            if name.lower() == PHYSX_VARIANT:
                variants.SetVariantSelection(name)
                return
        raise BackendUnavailable(
            f"the Spot USD {self.usd_path} has a '{PHYSICS_VARIANT_SET}' variant set without a PhysX variant "
            f"({names}); fix: use a Spot USD made for PhysX"
        )

    def _apply_spawn_properties(self, root: Any, scene: SceneSettings) -> None:
        """Isaac Lab's ``articulation_props`` on the articulation root and ``rigid_props`` on every link."""
        isaac = self._isaac
        roots, links = [], []
        for prim in isaac.Usd.PrimRange(root):
            if prim.HasAPI(isaac.UsdPhysics.ArticulationRootAPI):
                roots.append(prim)
            if prim.HasAPI(isaac.UsdPhysics.RigidBodyAPI):
                links.append(prim)
        if not roots or not links:
            raise BackendUnavailable(
                f"the USD {self.usd_path} has {len(roots)} articulation roots and {len(links)} rigid bodies under "
                f"{root.GetPath()}; fix: give a Spot USD with physics (an articulated robot)"
            )
        articulation = {
            "enabledSelfCollisions": scene.enabled_self_collisions,
            "solverPositionIterationCount": scene.solver_position_iteration_count,
            "solverVelocityIterationCount": scene.solver_velocity_iteration_count,
            # Never asleep: a standing robot must keep reporting fresh state (Isaac Lab leaves it unset).
            "sleepThreshold": 0.0,
        }
        for prim in roots:
            isaac.PhysxSchema.PhysxArticulationAPI.Apply(prim)
            self._set_attributes(prim, "physxArticulation", articulation)
        for prim in links:
            isaac.PhysxSchema.PhysxRigidBodyAPI.Apply(prim)
            self._set_attributes(prim, "physxRigidBody", scene.rigid_body)

    @staticmethod
    def _set_attributes(prim: Any, namespace: str, values: Any) -> None:
        for name, value in values.items():
            if value is None:
                continue  # keep the USD asset's value
            attribute = prim.GetAttribute(f"{namespace}:{name}")
            if not attribute.IsValid() or not attribute.Set(value):
                raise ValueError(f"cannot set {namespace}:{name} = {value!r} on {prim.GetPath()}")

    def _base_mass(self) -> float:
        return float(np.asarray(self._bodies.get_body_masses(body_indices=np.array([self._base_index]))).reshape(-1)[0])

    # --- SimBackend --------------------------------------------------------------------------

    @property
    def physics_dt(self) -> float:
        return self._dt

    def joint_limits(self) -> np.ndarray:
        """The articulation's DOF limits (radians, as ``dof_properties`` reports them), Isaac order."""
        props = self._robot.dof_properties
        return conv.joint_limits_from_dofs(props["lower"], props["upper"], self._dofs)

    def reset(self, joint_pos: dict[str, float] | None = None, base_height: float | None = None) -> None:
        """At rest in ``joint_pos`` (default pose), level, feet just above the ground, PD holding it."""
        pose = default_joint_pos_array(joint_pos)
        height = conv.standing_base_height(pose) + RESET_CLEARANCE_M if base_height is None else float(base_height)
        robot = self._robot
        robot.set_world_pose(position=np.array([0.0, 0.0, height]), orientation=np.array([1.0, 0.0, 0.0, 0.0]))
        robot.set_linear_velocity(np.zeros(3))
        robot.set_angular_velocity(np.zeros(3))
        robot.set_joint_positions(conv.scatter_to_dofs(pose, self._dofs, robot.get_joint_positions()))
        robot.set_joint_velocities(np.zeros(self._n_dof))
        robot.set_joint_efforts(np.zeros(len(self._dofs)), joint_indices=self._dofs)
        self._pd.reset(pose)
        self._steps = 0
        self._tau = np.zeros(len(self._joint_names))
        # Placed just above the ground, not yet carried by it: no measurement yet, and the best
        # guess is free fall (MuJoCo's accelerometer reads zero at touchdown too).
        self._imu = np.zeros(3)

    def set_gains(self, kp: float | np.ndarray, kd: float | np.ndarray) -> None:
        self._pd.set_gains(kp, kd)

    def set_targets(self, q_target: np.ndarray) -> None:
        self._pd.set_target(q_target)

    def set_limp(self, on: bool) -> None:
        self._pd.limp = bool(on)

    def set_command_delay(self, steps: int) -> None:
        """A target set now is applied ``steps`` physics steps later (Isaac Lab: 0-4 at 500 Hz)."""
        self._pd.set_delay(steps)

    def step(self, n_physics_steps: int = 1) -> None:
        """The PD torque is recomputed before every physics step, as an explicit actuator is."""
        robot, world, dofs = self._robot, self._world, self._dofs
        n = int(n_physics_steps)
        vel_before = None
        for k in range(n):
            q = robot.get_joint_positions(joint_indices=dofs)
            dq = robot.get_joint_velocities(joint_indices=dofs)
            self._tau = self._pd.torque(q, dq)
            robot.set_joint_efforts(self._tau, joint_indices=dofs)
            if k == n - 1:
                vel_before = np.asarray(robot.get_linear_velocity(), dtype=np.float64)
            world.step(render=False)
            self._steps += 1
            if not self._isaac.headless and self._steps % 10 == 0:
                world.render()
        if vel_before is not None:
            _, quat = robot.get_world_pose()
            self._imu = conv.proper_acceleration_body(vel_before, robot.get_linear_velocity(), self._dt, quat)

    def state(self) -> RobotState:
        robot, dofs = self._robot, self._dofs
        pos, quat = robot.get_world_pose()  # world frame, quaternion (w, x, y, z)
        quat = conv.normalized_quat(quat)
        # Root velocities come in the world frame; the contract wants them in the body frame.
        # (PhysX reports the root's center-of-mass velocity; Spot's body COM sits 5 mm below the
        # link origin, so the difference, omega x 5 mm, stays below 1 cm/s.)
        return RobotState(
            sim_time=self._steps * self._dt,
            joint_names=self._joint_names,
            q=np.asarray(robot.get_joint_positions(joint_indices=dofs), dtype=np.float64),
            dq=np.asarray(robot.get_joint_velocities(joint_indices=dofs), dtype=np.float64),
            tau=self._tau.copy(),
            base_pos=np.asarray(pos, dtype=np.float64).copy(),
            base_quat=quat,
            base_lin_vel_body=conv.world_to_body(robot.get_linear_velocity(), quat),
            base_ang_vel_body=conv.world_to_body(robot.get_angular_velocity(), quat),
            imu_lin_acc=self._imu.copy(),
        )

    def push(self, delta_v_world: np.ndarray) -> None:
        kick = np.asarray(delta_v_world, dtype=np.float64).reshape(3)
        self._robot.set_linear_velocity(np.asarray(self._robot.get_linear_velocity(), dtype=np.float64) + kick)

    def set_friction(self, mu: float) -> None:
        """The robot's material gets ``mu`` (ground 1.0, "multiply"); flushed so PhysX sees it at the next step."""
        mu = conv.checked_friction(mu)
        self._robot_material.set_static_friction(mu)
        self._robot_material.set_dynamic_friction(mu)
        self._flush()

    def set_payload(self, kg: float, offset: Sequence[float] | None = None) -> None:
        """A point mass at the body's COM: the body link's mass grows (articulation view), its COM and inertia stay.

        An off-centre payload (``offset`` from the COM) is the MuJoCo backend's only: ``ValueError``.
        """
        if offset is not None and any(float(v) != 0.0 for v in offset):
            raise ValueError(
                f"payload offset {list(offset)} m: an off-centre payload is built by the mujoco backend only; use "
                "backend mujoco, or offset 0"
            )
        mass = conv.body_mass_with_payload(self._base_mass0, kg)
        self._bodies.set_body_masses(np.array([[mass]]), body_indices=np.array([self._base_index]))

    def set_base_state(
        self, pos: Vec = None, quat: Vec = None, lin_vel_world: Vec = None, ang_vel_world: Vec = None
    ) -> None:
        robot = self._robot
        if pos is not None or quat is not None:
            robot.set_world_pose(
                position=None if pos is None else np.asarray(pos, dtype=np.float64),
                orientation=None if quat is None else conv.normalized_quat(quat),
            )
        if lin_vel_world is not None:
            robot.set_linear_velocity(np.asarray(lin_vel_world, dtype=np.float64))
        if ang_vel_world is not None:
            robot.set_angular_velocity(np.asarray(ang_vel_world, dtype=np.float64))

    # --- Isaac extras ------------------------------------------------------------------------

    @property
    def total_mass(self) -> float:
        """Mass of every link of the articulation (kg), payload included."""
        return float(np.sum(self._bodies.get_body_masses()))

    def close(self) -> None:
        """Stop the timeline. Kit itself stays up until :func:`close_app` or the end of the process."""
        self._world.stop()
