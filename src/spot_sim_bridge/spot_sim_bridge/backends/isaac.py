"""Isaac Sim 5.x backend: Spot from Isaac Sim's own robot assets, headless, 500 Hz PhysX.

Everything that can be computed without Isaac Sim lives in ``isaac_conversions`` (unit-tested on
any machine); this module only makes the calls into Isaac Sim. ``isaacsim`` is imported lazily,
on the first :class:`IsaacSpot`, because importing it needs Isaac Sim installed (Python 3.11 and an
RTX GPU) and starts the Omniverse Kit runtime. Without it, :func:`require_isaacsim` fails at once
with one line saying what to install. This code is not exercised where Isaac Sim is missing (the
project's CI): ``test/test_backend_conformance.py`` runs it wherever ``isaacsim`` imports.

PD: explicit, in Python, like ``MujocoSpot`` and like Isaac Lab's Spot actuators (a delayed PD for
the hips, a "remotized" PD with the angle-dependent torque table for the knees). Isaac Lab
trains those as *explicit* actuators: it computes the torque itself and writes it as a joint
effort with the PhysX drives' stiffness and damping at zero. PhysX's implicit drives (stiffness /
damping on the joint) would run a different discretization and could not apply the knee table or
the command delay, so a policy would meet a subtly different robot than it was trained on. The
drives are therefore zeroed and :class:`~spot_sim_bridge.backends.isaac_conversions.SpotPD` computes the
torque every physics step; the drives' max effort is set to each joint's highest possible torque
(45 N*m hips, the table's peak for knees) as a ceiling only.

Isaac Sim documentation this is written against (Isaac Sim 5.x; the ``isaacsim.core.api`` /
``isaacsim.core.prims`` modules are the current API in 5.x and listed as deprecated from 6.0):

- standalone apps, ``SimulationApp`` before any other ``isaacsim``/``omni``/``pxr`` import:
  https://docs.isaacsim.omniverse.nvidia.com/latest/python_scripting/manual_standalone_python.html
- ``World`` (``physics_dt``, ``stage_units_in_meters``, ``reset``, ``step(render=False)``), ``GroundPlane``,
  ``PhysicsMaterial``: https://docs.isaacsim.omniverse.nvidia.com/latest/py/source/deprecated/isaacsim.core.api/config/python_api.html
- ``SingleArticulation`` (``dof_names``, ``dof_properties``, joint positions/velocities/efforts, root
  pose and velocities in the world frame, radians) and its ``ArticulationController`` (``set_gains``,
  ``set_max_efforts``): https://docs.isaacsim.omniverse.nvidia.com/5.0.0/robot_simulation/articulation_controller.html
  and https://docs.isaacsim.omniverse.nvidia.com/latest/py/source/deprecated/isaacsim.core.prims/config/python_api.html
- pip install, Python 3.11, GLIBC 2.35+:
  https://docs.isaacsim.omniverse.nvidia.com/5.0.0/installation/install_python.html
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from types import SimpleNamespace

import numpy as np

from spot_policy.core import contract
from spot_sim_bridge.backends import isaac_conversions as conv
from spot_sim_bridge.core.backend import (
    ISAAC_KD,
    ISAAC_KP,
    BackendBase,
    BackendUnavailable,
    RobotState,
    Vec,
    default_joint_pos_array,
)

ISAAC_SIM_VERSION = "5.1.0"
INSTALL_COMMAND = (
    f"pip install 'isaacsim[all,extscache]=={ISAAC_SIM_VERSION}' --extra-index-url https://pypi.nvidia.com"
)
#: Spot in Isaac Sim's own robot assets, relative to the assets root (``get_assets_root_path()``).
DEFAULT_SPOT_USD = "/Isaac/Robots/BostonDynamics/spot/spot.usd"
#: Overrides the default USD when no path is given (the bridge's ``asset_path`` parameter wins).
USD_PATH_ENV = "SPOT_ISAAC_USD"
#: The base link's name in Isaac Sim's and Isaac Lab's Spot (``body_names="body"`` in Isaac Lab).
BASE_LINK = "body"
#: Dropped from this high above touchdown at reset: absorbs small differences between the USD's
#: legs and SPOT.md's kinematics instead of starting in penetration.
RESET_CLEARANCE_M = 0.01

_isaac: SimpleNamespace | None = None  # the lazily imported Isaac Sim API; the SimulationApp lives in it


def isaac_unavailable_reason() -> str | None:
    """Why the Isaac Sim backend cannot run in this interpreter (one line), or None if it can try.

    Checked without importing ``isaacsim``: that import starts Kit and may ask for the EULA.
    """
    python = f"Python {'.'.join(map(str, sys.version_info[:3]))} ({sys.executable})"
    where = (
        f"install Isaac Sim 5.x on a machine with an NVIDIA RTX GPU into a Python 3.11 "
        f"environment: {INSTALL_COMMAND} (docs/ISAAC_SIM.md)"
    )
    if sys.version_info[:2] != (3, 11):
        return f"backend 'isaac' needs Isaac Sim 5.x, which runs on Python 3.11 only; this is {python}; {where}"
    if importlib.util.find_spec("isaacsim") is None:
        return f"backend 'isaac' needs Isaac Sim 5.x, which {python} cannot import; {where}"
    try:
        version = importlib.metadata.version("isaacsim")
    except importlib.metadata.PackageNotFoundError:  # a binary install run through its python.sh
        return None
    if not version.startswith("5."):
        return f"backend 'isaac' is written for Isaac Sim 5.x but {python} has isaacsim {version}; {where}"
    return None


def require_isaacsim() -> None:
    """Raise :class:`BackendUnavailable` (one line: what to install) unless Isaac Sim 5.x can load."""
    reason = isaac_unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(reason)


def _load_isaac(headless: bool) -> SimpleNamespace:
    """Start Kit once per process (``SimulationApp``), then import the API it makes importable."""
    global _isaac
    if _isaac is not None:
        return _isaac
    require_isaacsim()
    from isaacsim import SimulationApp

    app = SimulationApp({"headless": headless})
    # Only importable once the SimulationApp exists.
    from isaacsim.core.api import World
    from isaacsim.core.api.materials import PhysicsMaterial
    from isaacsim.core.api.objects import GroundPlane
    from isaacsim.core.prims import SingleArticulation, SingleRigidPrim
    from isaacsim.core.utils.stage import add_reference_to_stage, create_new_stage
    from isaacsim.storage.native import get_assets_root_path
    from pxr import Usd, UsdPhysics, UsdShade

    _isaac = SimpleNamespace(
        app=app,
        headless=headless,
        World=World,
        PhysicsMaterial=PhysicsMaterial,
        GroundPlane=GroundPlane,
        SingleArticulation=SingleArticulation,
        SingleRigidPrim=SingleRigidPrim,
        add_reference_to_stage=add_reference_to_stage,
        create_new_stage=create_new_stage,
        get_assets_root_path=get_assets_root_path,
        Usd=Usd,
        UsdPhysics=UsdPhysics,
        UsdShade=UsdShade,
    )
    return _isaac


def close_app() -> None:
    """Shut Kit down (``SimulationApp.close()``) at the end of a process that used the backend."""
    global _isaac
    if _isaac is not None:
        app, _isaac = _isaac.app, None
        app.close()


def resolve_usd_path(usd_path: str | None, assets_root: str | None) -> str:
    """The Spot USD to load: the given path, else ``$SPOT_ISAAC_USD``, else the assets root's Spot."""
    chosen = usd_path or os.environ.get(USD_PATH_ENV)
    if chosen:
        return chosen
    if not assets_root:
        raise BackendUnavailable(
            "Isaac Sim's assets root is not reachable (get_assets_root_path() found nothing), so the default "
            f"Spot USD ({DEFAULT_SPOT_USD}) cannot be loaded; give the bridge's asset_path parameter "
            f"(or ${USD_PATH_ENV}) a local copy of spot.usd"
        )
    return assets_root.rstrip("/") + DEFAULT_SPOT_USD


class IsaacSpot(BackendBase):
    """Spot in Isaac Sim behind the :class:`~spot_sim_bridge.core.backend.SimBackend` interface.

    One per process: Kit holds one stage, and a new instance replaces the previous one's stage.
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
        prim_path: str = "/World/Spot",
        headless: bool = True,
    ) -> None:
        if not physics_dt > 0.0:
            raise ValueError(f"physics_dt must be > 0, got {physics_dt}")
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
        mu = conv.checked_friction(friction)
        # One material for ground and robot with PhysX's default "average" combine mode: the
        # contact then has exactly this friction (MuJoCo's backend sets both sides too).
        self._material = isaac.PhysicsMaterial(
            prim_path="/World/Materials/contact", static_friction=mu, dynamic_friction=mu, restitution=0.0
        )
        world.scene.add(
            isaac.GroundPlane(prim_path="/World/GroundPlane", z_position=0.0, physics_material=self._material)
        )

        usd = resolve_usd_path(usd_path, isaac.get_assets_root_path())
        isaac.add_reference_to_stage(usd_path=usd, prim_path=prim_path)
        robot = isaac.SingleArticulation(prim_path=prim_path, name="spot")
        # Bound on the robot's root, stronger than the USD's own bindings on its links (USD
        # material binding with the "physics" purpose, which PhysX reads).
        isaac.UsdShade.MaterialBindingAPI.Apply(robot.prim).Bind(
            self._material.material, isaac.UsdShade.Tokens.strongerThanDescendants, "physics"
        )
        # Isaac Lab's Spot articulation settings: 4 position / 0 velocity solver iterations, no
        # self-collisions; never asleep (a standing robot must keep reporting fresh state).
        robot.set_solver_position_iteration_count(4)
        robot.set_solver_velocity_iteration_count(0)
        robot.set_enabled_self_collisions(False)
        robot.set_sleep_threshold(0.0)
        self._robot = world.scene.add(robot)
        self._body = world.scene.add(
            isaac.SingleRigidPrim(
                prim_path=self._find_link(prim_path, BASE_LINK), name="spot_body", reset_xform_properties=False
            )
        )
        world.reset()  # starts the timeline and initializes the physics handles

        self._dofs = conv.leg_dof_indices(list(robot.dof_names))
        self._n_dof = int(robot.num_dof)
        controller = robot.get_articulation_controller()
        stiffness, damping = controller.get_gains()
        stiffness, damping = conv.drive_gains_for_explicit_pd(stiffness, damping, self._dofs)
        controller.set_gains(kps=stiffness, kds=damping)
        controller.set_max_efforts(self._pd.max_effort, joint_indices=self._dofs)
        self._base_mass0 = float(self._body.get_mass())

        self._steps = 0
        self._tau = np.zeros(len(self._joint_names))
        self._imu = np.zeros(3)
        self.set_payload(payload_kg)
        self.set_command_delay(command_delay_steps)
        self.reset()

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
        """Both sides of every robot-ground contact share this material, so the contact gets ``mu``."""
        mu = conv.checked_friction(mu)
        self._material.set_static_friction(mu)
        self._material.set_dynamic_friction(mu)

    def set_payload(self, kg: float) -> None:
        """A point mass at the body's COM: the body's mass grows, its COM and inertia stay."""
        self._body.set_mass(conv.body_mass_with_payload(self._base_mass0, kg))

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
        """Body mass only changes with the payload; the legs are what the USD says."""
        return float(self._body.get_mass())

    def close(self) -> None:
        """Stop the timeline. Kit itself stays up until the process ends (one SimulationApp per process)."""
        self._world.stop()

    def _find_link(self, root_path: str, name: str) -> str:
        """Path of the rigid body called ``name`` under ``root_path`` (its nesting differs between USD versions)."""
        isaac = self._isaac
        stage = self._robot.prim.GetStage()
        for prim in isaac.Usd.PrimRange(stage.GetPrimAtPath(root_path)):
            if prim.GetName() == name and prim.HasAPI(isaac.UsdPhysics.RigidBodyAPI):
                return str(prim.GetPath())
        raise ValueError(f"no rigid body named {name!r} under {root_path} (the Spot USD's base link)")
