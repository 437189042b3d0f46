"""Record now, replay now: the check every test that makes a fresh recording applies to it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from spot_policy.core.onnx_mlp import random_mlp
from spot_policy_tools.replay import ReplayError, ReplayReport, read_recording, recorded_policy, replay

from policy_fixtures import make_run

#: The one reason a real-time recording may not replay: the recorder lost a best-effort sensor
#: message the node used (the replay then names it).
LOST_IN_RECORDER = "is not in the bag (the recorder lost it"


def replay_or_reason(bag: Path, exact: bool) -> ReplayReport | None:
    """The offline replay of a fresh recording with the policy it names (checked by SHA-256).

    ``exact`` (lockstep): it must replay. Otherwise None when the replay said exactly that the
    recorder lost a message the node used; any other refusal is raised.
    """
    rec = read_recording(bag)
    try:
        return replay(rec, recorded_policy(rec))
    except ReplayError as exc:
        if exact or LOST_IN_RECORDER not in str(exc):
            raise
        return None


EXE = Path(sys.executable).with_name("spot-policy")
#: cmd_vel changes every 0.3 s, mode switches (stand -> walk -> stand -> walk -> stop -> stand).
CHOPPY_PROFILE = (
    """
name: choppy
settle_s: 0.0
segments:
  - {name: stand, mode: stand, duration: 1.0}
"""
    + "".join(
        f"  - {{name: w{i}, mode: walk, duration: 0.3, cmd_vel: [{0.1 * (i % 5):.1f}, {0.05 * (i % 3):.2f}, "
        f"{0.2 * (i % 4) - 0.3:.1f}]}}\n"
        for i in range(10)
    )
    + """  - {name: restand, mode: stand, duration: 0.6}
  - {name: again, mode: walk, duration: 0.9, cmd_vel: [0.3, 0.0, 0.0]}
  - {name: stop, mode: stop, duration: 0.4}
  - {name: last, mode: stand, duration: 0.4}
"""
)


def calm_random_run(root: Path) -> Path:
    """A run folder with a random network whose actions stay small (its last layer scaled by 0.1):
    it runs on every walk step, as replay needs, but cannot throw the legs about. A full-scale random
    network sometimes did (a knee at 44 rad/s after a quick stand-walk switch), and the node then
    rightly faulted and cut the profile short, depending on where the switches landed."""
    layers = random_mlp((48, 64, 12), seed=0)
    weight, bias = layers[-1]
    layers[-1] = (weight * 0.1, bias * 0.1)
    return make_run(root, layers=layers)


def record_choppy(out: Path, policy: Path, *args: str) -> Path:
    """A fresh ``spot-policy sim`` run of :data:`CHOPPY_PROFILE`; its bag."""
    profile = out.parent / "choppy.yaml"
    profile.write_text(CHOPPY_PROFILE)
    cmd = [str(EXE), "sim", "--out", str(out), "--profile", str(profile), "--policy", str(policy), "--no-video"]
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out / "bag"
