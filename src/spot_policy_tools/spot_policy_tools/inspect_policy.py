"""``spot-policy inspect``: the resolved policy spec, as a table for people or JSON for tools."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from spot_policy.core.loader import LoadedPolicy


def _num(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_num(v) for v in value.tolist()]
    if isinstance(value, (np.floating, float)):
        return round(float(value), 6)
    if isinstance(value, (list, tuple)):
        return [_num(v) for v in value]
    return value


def describe(loaded: LoadedPolicy, intra_op_threads: int = 1) -> dict[str, Any]:
    """Everything a deployment resolved from the run folder, as plain JSON-able data."""
    spec, model, files = loaded.spec, loaded.model, loaded.files
    action = spec.action
    return {
        "run_dir": str(spec.run_dir),
        "env_yaml": str(spec.env_yaml),
        "onnx": str(spec.onnx_path),
        "newest_checkpoint": str(files.newest_checkpoint) if files.newest_checkpoint else None,
        "timing": {
            "physics_dt_s": spec.physics_dt,
            "decimation": spec.decimation,
            "control_dt_s": round(spec.control_dt, 9),
            "control_rate_hz": round(spec.control_rate_hz, 6),
        },
        "observation": {
            "dim": spec.obs_dim,
            "terms": [
                {
                    "name": t.name,
                    "func": t.func,
                    "source": t.source,
                    "slice": [t.start, t.stop],
                    "dim_per_step": t.dim,
                    "history": t.history,
                    "scale": _num(t.scale) if t.scale is not None else None,
                    "clip": list(t.clip) if t.clip else None,
                }
                for t in spec.obs_terms
            ],
        },
        "action": {
            "dim": spec.action_dim,
            "joint_order": list(action.joint_names),
            "scale": _num(action.scale),
            "offset": _num(action.offset),
            "clip": _num(action.clip) if action.clip is not None else None,
            "raw_clip": action.raw_clip,
        },
        "joints": [
            {
                "name": name,
                "default": _num(spec.default_joint_pos[i]),
                "kp": _num(spec.stiffness[i]),
                "kd": _num(spec.damping[i]),
                "effort_limit": spec.effort_limit[i] if spec.effort_limit[i] is not None else "angle-dependent table",
                "lower": _num(spec.joint_lower[i]),
                "upper": _num(spec.joint_upper[i]),
            }
            for i, name in enumerate(spec.joint_names)
        ],
        "command_ranges": {k: list(v) for k, v in spec.command_ranges.items()},
        "onnx_model": {
            "inputs": [{"name": n, "shape": list(model.input_shape)} for n in model.input_names],
            "outputs": [{"name": n, "shape": list(model.output_shape)} for n in model.output_names[:1]],
            "execution_provider": model.provider,
            "intra_op_threads": intra_op_threads,
        },
        "notes": list(spec.notes),
    }


def as_json(info: dict[str, Any]) -> str:
    return json.dumps(info, indent=2)


def as_text(info: dict[str, Any]) -> str:
    t, o, a, m = info["timing"], info["observation"], info["action"], info["onnx_model"]
    lines = [
        f"run folder      {info['run_dir']}",
        f"env.yaml        {info['env_yaml']}",
        f"policy          {info['onnx']}",
        f"checkpoint      {info['newest_checkpoint'] or '-'} (newest; deployment runs the ONNX export)",
        f"timing          physics dt {t['physics_dt_s']} s x decimation {t['decimation']} = "
        f"{t['control_dt_s']} s ({t['control_rate_hz']:g} Hz)",
        f"onnx            in {m['inputs'][0]['name']} {m['inputs'][0]['shape']} -> "
        f"out {m['outputs'][0]['name']} {m['outputs'][0]['shape']}; provider {m['execution_provider']}, "
        f"{m['intra_op_threads']} intra-op thread(s)",
        "",
        f"observation ({o['dim']} values)",
        f"  {'slice':<9} {'term':<20} {'func':<19} {'hist':>4}  scale  clip",
    ]
    for term in o["terms"]:
        sl = f"{term['slice'][0]}:{term['slice'][1]}"
        scale = "-" if term["scale"] is None else ",".join(f"{s:g}" for s in sorted(set(term["scale"])))
        clip = "-" if term["clip"] is None else f"[{term['clip'][0]:g}, {term['clip'][1]:g}]"
        lines.append(f"  {sl:<9} {term['name']:<20} {term['func']:<19} {term['history']:>4}  {scale:<5}  {clip}")
    scales = sorted(set(a["scale"]))
    lines += [
        "",
        f"action ({a['dim']} joints): target = offset + scale x action; scale "
        f"{','.join(f'{s:g}' for s in scales)}; clip {a['clip'] or '-'}; raw clip {a['raw_clip'] or '-'}",
        f"  order: {' '.join(a['joint_order'])}",
        "",
        f"  {'joint':<7} {'default':>8} {'kp':>6} {'kd':>5} {'effort limit':>22} {'lower':>9} {'upper':>9}",
    ]
    for j in info["joints"]:
        limit = j["effort_limit"] if isinstance(j["effort_limit"], str) else f"{j['effort_limit']:g} N*m"
        lines.append(
            f"  {j['name']:<7} {j['default']:>8.3f} {j['kp']:>6g} {j['kd']:>5g} {limit:>22} "
            f"{j['lower']:>9.4f} {j['upper']:>9.4f}"
        )
    lines += ["", "command ranges (cmd_vel is clipped to these)"]
    units = {"lin_vel_x": "m/s", "lin_vel_y": "m/s", "ang_vel_z": "rad/s"}
    for key, (lo, hi) in info["command_ranges"].items():
        lines.append(f"  {key:<10} [{lo:g}, {hi:g}] {units.get(key, '')}")
    lines += [f"note: {n}" for n in info["notes"]]
    return "\n".join(lines)
