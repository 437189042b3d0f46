"""Write ``params/env.yaml`` / ``params/agent.yaml`` the way Isaac Lab's ``dump_yaml`` writes them.

Isaac Lab turns its config classes into dicts (callables become ``"module:attr"`` strings) and
calls ``yaml.dump(..., default_flow_style=False, sort_keys=False)`` with PyYAML's full Dumper,
which tags Python tuples ``!!python/tuple`` and slices ``!!python/object/apply:builtins.slice``.
The same call here gives files that ``spot_policy``'s loader (and Isaac Lab's tools) read like
any Isaac Lab run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ALL = slice(None, None, None)  # Isaac Lab's SceneEntityCfg joint_ids / body_ids default


class _Dumper(yaml.Dumper):
    """PyYAML's full Dumper (Python tags), writing repeated values out instead of as &anchors."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def dump_isaaclab_yaml(data: dict[str, Any], path: Path, header: str = "") -> Path:
    """Dump ``data`` (tuples and slices kept as Python tags) to ``path``; ``header`` becomes comments."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(data, Dumper=_Dumper, default_flow_style=False, sort_keys=False)
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    path.write_text(comments + text, encoding="utf-8")
    return path
