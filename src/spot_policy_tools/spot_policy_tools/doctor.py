"""``spot-policy doctor --backend isaac``: can this machine run the Isaac Sim backend? One line per need.

Each line is ``ok``, ``warn`` (works, with a caveat), ``FAIL`` (with the fix) or ``skip`` (not
checked, and why): Python, the Isaac Sim release, the GPU, the EULA, the policy's physics scene
settings, the Spot USD, and the joint names of the loaded Spot against the contract. The last two
need Isaac Sim itself: where the lines before them pass, the doctor starts Isaac Sim (minutes the
first time), loads Spot through the backend exactly as the bridge does, and closes it. Where Isaac
Sim is missing it says so on every line that needs it. Exit status 0 without a FAIL, else 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from spot_policy.core import contract, paths
from spot_policy.core.errors import PolicyLoadError
from spot_policy.core.locate import locate_run
from spot_sim_bridge.backends import isaac_release
from spot_sim_bridge.backends.isaac_release import LINES, IsaacSimInstall
from spot_sim_bridge.backends.isaac_scene import DEFAULT, load_scene_settings

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
#: Isaac Sim's GPU table (README of v5.1.0 and v6.0.1, "GPU"): RTX workstation cards, and these data-center ones.
LISTED_DATACENTER_GPUS = ("A40", "L40S", "L20")
EULA_ENV = "OMNI_KIT_ACCEPT_EULA"
#: Isaac Sim's default assets root per line (``isaacsim.storage.native/config/extension.toml:25``).
ASSETS_ROOT = "https://omniverse-content-production.s3-us-west-2.amazonaws.com/Assets/Isaac/{major}.{minor}"
DEFAULT_POLICY = "spot_flat_mjx"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.detail}"


def check_python(python: Sequence[int], found: IsaacSimInstall | None, executable: str = sys.executable) -> Check:
    here = isaac_release.python_text(python, executable)
    running = tuple(python[:2])
    line = found.line if found is not None else None
    if line is not None:
        if running == line.python:
            return Check("Python", OK, f"{here}, the Python Isaac Sim {line.major}.x is built for")
        return Check(
            "Python",
            FAIL,
            f"{here}, but Isaac Sim {found.version} runs on Python {line.python_text} only; fix: run from the Python "
            f"{line.python_text} environment Isaac Sim is installed in",
        )
    fitting = [f"{release.major}.x" for release in LINES.values() if release.python == running]
    if fitting:
        return Check("Python", OK, f"{here}, fits Isaac Sim {fitting[0]} (5.x needs 3.11, 6.x needs 3.12)")
    return Check(
        "Python",
        FAIL,
        f"{here} fits no Isaac Sim release; fix: a Python 3.11 (Isaac Sim 5.x) or 3.12 (Isaac Sim 6.x) environment "
        "(docs/ISAAC_SIM.md, Install)",
    )


def check_isaac_sim(python: Sequence[int], found: IsaacSimInstall | None) -> Check:
    if found is None:
        fitting = next((line for line in LINES.values() if line.python == tuple(python[:2])), LINES[6])
        return Check("Isaac Sim", FAIL, f"not installed in this Python; fix: {fitting.install_command}")
    if found.version is None:
        return Check("Isaac Sim", WARN, f"isaacsim imports but its release is unknown ({found.found_by})")
    if found.line is None:
        return Check(
            "Isaac Sim",
            FAIL,
            f"{found.version} ({found.found_by}); backend 'isaac' supports 5.x and 6.x; "
            f"fix: {LINES[6].install_command}",
        )
    note = isaac_release.unchecked_release_note(found)
    if note is not None:
        return Check("Isaac Sim", WARN, f"{found.version} ({found.found_by}); {note}")
    return Check("Isaac Sim", OK, f"{found.version} ({found.found_by}), a release the backend was checked against")


def nvidia_smi() -> subprocess.CompletedProcess[str] | None:
    """``nvidia-smi``'s GPU list (name, driver, memory), or None without the tool."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None
    query = ["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    return subprocess.run([tool, *query], capture_output=True, text=True, timeout=30)


def is_listed_gpu(name: str) -> bool:
    words = name.upper().split()
    return "RTX" in words or any(model in words for model in LISTED_DATACENTER_GPUS)


def check_gpu(query: Callable[[], subprocess.CompletedProcess[str] | None] = nvidia_smi) -> Check:
    fix = "fix: Isaac Sim needs an NVIDIA RTX GPU and its driver (nvidia-smi lists it)"
    try:
        result = query()
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("GPU", FAIL, f"nvidia-smi failed ({exc}); {fix}")
    if result is None:
        return Check("GPU", FAIL, f"no nvidia-smi on PATH, so no NVIDIA driver here; {fix}")
    rows = [row.strip() for row in result.stdout.splitlines() if row.strip()]
    if result.returncode != 0 or not rows:
        said = (result.stderr or result.stdout).strip().splitlines()
        return Check(
            "GPU", FAIL, f"nvidia-smi lists no GPU ({said[0] if said else f'status {result.returncode}'}); {fix}"
        )
    gpus = [[part.strip() for part in row.split(",")] for row in rows]
    listed = [
        g for g in gpus if "RTX" in g[0].upper() or any(n in g[0].upper().split() for n in LISTED_DATACENTER_GPUS)
    ]
    described = "; ".join(f"{g[0]} (driver {g[1]}, {g[2]})" if len(g) >= 3 else g[0] for g in gpus)
    if listed:
        return Check("GPU", OK, described)
    return Check(
        "GPU",
        WARN,
        f"{described}: not in Isaac Sim's GPU table (RTX cards, data center A40/L40S/L20; GPUs without RT cores such "
        "as A100/H100/H200 are not in it); fix: run on a listed GPU",
    )


def check_eula(environ: Mapping[str, str]) -> Check:
    value = environ.get(EULA_ENV, "")
    if value.strip().lower() in ("yes", "y"):
        return Check("EULA", OK, f"{EULA_ENV}={value}: accepted for non-interactive starts")
    shown = f"{EULA_ENV}={value!r}" if value else f"{EULA_ENV} is not set"
    return Check(
        "EULA",
        FAIL,
        f"{shown}: Isaac Sim asks on first start and a launched bridge cannot answer; fix: read the NVIDIA Omniverse "
        f"EULA, then export {EULA_ENV}=YES",
    )


def check_scene(policy: str, logs_root: Path | None) -> Check:
    try:
        env_yaml = locate_run(policy, logs_root, paths.config_dir() / "policies").env_yaml
        scene = load_scene_settings(env_yaml)
    except (PolicyLoadError, ValueError, OSError) as exc:
        return Check("physics scene", FAIL, str(exc))
    from_file = sorted(name for name, source in scene.sources.items() if source != DEFAULT)
    return Check(
        "physics scene",
        OK,
        f"{env_yaml}: {len(from_file)} of {len(scene.sources)} settings from it ({', '.join(from_file) or 'none'}), "
        "the others Isaac Lab's Spot values",
    )


def check_usd_static(asset_path: str | None, found: IsaacSimInstall | None) -> Check:
    """The Spot USD as far as it can be checked without Isaac Sim."""
    if asset_path:
        if "://" in asset_path:
            return Check("Spot USD", OK, f"{asset_path} (remote: fetched when Isaac Sim loads it)")
        path = Path(asset_path).expanduser()
        if path.is_file():
            return Check("Spot USD", OK, f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
        return Check("Spot USD", FAIL, f"{path} does not exist; fix: the path of a local spot.usd (--asset-path)")
    numbers = found.numbers if found is not None else None
    root = ASSETS_ROOT.format(major=numbers[0], minor=numbers[1]) if numbers else "Isaac Sim's assets root"
    return Check(
        "Spot USD",
        SKIP,
        f"no local USD given (--asset-path, $SPOT_ISAAC_USD): Spot would come from {root}, which only Isaac Sim can "
        "reach; offline, give a local spot.usd with --asset-path",
    )


def load_spot(asset_path: str | None, env_yaml: Path | None) -> list[Check]:
    """Start Isaac Sim, load Spot as the bridge does, compare its joints with the contract, close."""
    from spot_sim_bridge.backends.isaac import IsaacSpot, close_app

    print("starting Isaac Sim to load Spot (the first start takes minutes) ...", flush=True)
    try:
        spot = IsaacSpot(usd_path=asset_path, env_yaml=env_yaml)
        try:
            pairs = spot_joints(spot.dof_names)
            mapping = ", ".join(f"{joint}=dof {spot.dof_names.index(name)}" for joint, name in pairs)
            return [
                Check("Spot USD", OK, f"{spot.usd_path} loaded"),
                Check("joint names", OK, f"the contract's 12 joints, by name: {mapping}"),
            ]
        finally:
            spot.close()
    except ValueError as exc:  # BackendUnavailable too: each says what to fix
        if "leg joints" in str(exc):  # conv.leg_dof_indices: the DOFs are not Spot's 12 by name
            return [Check("Spot USD", OK, "loaded"), Check("joint names", FAIL, str(exc))]
        return [Check("Spot USD", FAIL, str(exc)), Check("joint names", SKIP, "no Spot loaded")]
    except Exception as exc:  # inside Isaac Sim: its log above has the details
        failed = f"{type(exc).__name__}: {exc} (Isaac Sim's log above has the details)"
        return [Check("Spot USD", FAIL, failed), Check("joint names", SKIP, "no Spot loaded")]
    finally:
        close_app()


def spot_joints(dof_names: Sequence[str]) -> list[tuple[str, str]]:
    """(contract joint, articulation DOF name) in contract order."""
    by_joint = {contract.canonical_joint_name(name): name for name in dof_names}
    return [(joint, by_joint[joint]) for joint in contract.ISAAC_JOINT_ORDER]


def isaac_checks(
    install: IsaacSimInstall | None,
    asset_path: str | None,
    policy: str,
    logs_root: Path | None,
    load: bool,
    environ: Mapping[str, str] = os.environ,
    gpu: Callable[[], Check] = check_gpu,
    interactive: bool = False,
) -> list[Check]:
    """Every line, in order; Isaac Sim is started (``load``) only where the lines before allow it."""
    python = sys.version_info
    checks = [
        check_python(python, install),
        check_isaac_sim(python, install),
        gpu(),
        check_eula(environ),
        check_scene(policy, logs_root),
    ]
    usd = check_usd_static(asset_path, install)
    blocking = [c for c in checks[:4] if c.status == FAIL and (c.name != "EULA" or not interactive)]
    if blocking:
        why = ", ".join(c.name for c in blocking)
        not_loaded = f"not loaded: Isaac Sim cannot start here ({why} above)"
        checks += [
            usd if usd.status == FAIL else Check("Spot USD", usd.status, f"{usd.detail}; {not_loaded}"),
            Check("joint names", SKIP, f"not checked: needs Spot loaded in Isaac Sim ({why} above)"),
        ]
    elif not load:
        checks += [usd, Check("joint names", SKIP, "not checked: --no-load")]
    elif usd.status == FAIL:
        checks += [usd, Check("joint names", SKIP, "no Spot USD to load")]
    else:
        try:
            env_yaml: Path | None = locate_run(policy, logs_root, paths.config_dir() / "policies").env_yaml
        except PolicyLoadError:
            env_yaml = None  # its FAIL line is above; Spot loads with Isaac Lab's defaults
        checks += load_spot(asset_path, env_yaml)
    return checks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("isaac",), default="isaac", help="the backend to check (default: isaac)")
    parser.add_argument(
        "--asset-path",
        default=None,
        help="the Spot USD the bridge will load (its asset_path parameter; default: $SPOT_ISAAC_USD, else Isaac "
        "Sim's assets root)",
    )
    parser.add_argument(
        "--policy",
        default=DEFAULT_POLICY,
        help=f"the policy whose env.yaml gives the physics scene (default: {DEFAULT_POLICY})",
    )
    parser.add_argument("--logs-root", type=Path, default=None, help="folder of Isaac Lab runs, for --policy latest")
    parser.add_argument(
        "--no-load", action="store_true", help="do not start Isaac Sim (skip the Spot USD and joint-name checks)"
    )


def main(args: argparse.Namespace) -> int:
    asset_path = args.asset_path or os.environ.get("SPOT_ISAAC_USD") or None
    checks = isaac_checks(
        isaac_release.find_isaac_sim(),
        asset_path,
        args.policy,
        args.logs_root,
        load=not args.no_load,
        interactive=sys.stdin.isatty(),
    )
    for check in checks:
        print(check.line())
    failed = [c.name for c in checks if c.status == FAIL]
    print(f"{len(failed)} of {len(checks)} checks failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
