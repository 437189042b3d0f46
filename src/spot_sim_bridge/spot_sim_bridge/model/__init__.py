"""Spot's model files, written from Spot's published numbers: the MJCF and the knee torque table,
and the URDF generated from the MJCF (:mod:`spot_sim_bridge.model.urdf`).

The MuJoCo backend, the Isaac Sim backend's actuators, the emulator's body and the run video all
read them from here; the bridges publish the URDF as ``robot_description``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

MODEL_DIR = Path(__file__).resolve().parent
SPOT_MJCF = MODEL_DIR / "spot.xml"
KNEE_TORQUE_TABLE = MODEL_DIR / "spot_knee_torque_limits.csv"
#: Generated from SPOT_MJCF (python -m spot_sim_bridge.model.urdf); a test keeps it current.
SPOT_URDF = MODEL_DIR / "spot.urdf"


def robot_description() -> str:
    """Spot's URDF text, as the bridges publish it on ``robot_description``."""
    return SPOT_URDF.read_text()


def load_knee_torque_table(path: Path = KNEE_TORQUE_TABLE) -> tuple[np.ndarray, np.ndarray]:
    """(knee angles rad ascending, max output torque N*m) of Spot's remotized knee (SPOT.md)."""
    with open(path, newline="") as table:
        rows = sorted((float(r["knee_angle_rad"]), float(r["max_output_torque_nm"])) for r in csv.DictReader(table))
    angles, torques = (np.array(column, dtype=np.float64) for column in zip(*rows, strict=True))
    return angles, torques
