"""Read Isaac Lab's ``params/env.yaml`` without executing anything.

Isaac Lab dumps its config with Python tags (``!!python/tuple``, ``!!python/object/apply:...``,
``!!python/name:...``) that ``yaml.safe_load`` rejects and ``yaml.unsafe_load`` would execute.
This loader keeps the safe loader's behaviour and turns every Python tag into inert data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class PythonTag:
    """A Python-tagged YAML value kept as data (e.g. ``builtins.slice`` with ``[None, None, None]``)."""

    tag: str
    value: Any


#: LibYAML's parser where PyYAML was built with it (the wheels are): an env.yaml parses ~10x
#: faster, which is most of a node's start-up; the pure-Python parser otherwise. Same safe constructor.
_SAFE_BASE: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class IsaacLabLoader(_SAFE_BASE):
    """A safe loader that accepts Isaac Lab's Python tags as data."""


def _construct_python(loader: IsaacLabLoader, suffix: str, node: yaml.Node) -> Any:
    if suffix == "tuple":
        return tuple(loader.construct_sequence(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        value: Any = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    # ``name:module.attr`` and ``object/apply:module.attr`` name a callable: keep it as a string
    # ("module:attr"-style references are what Isaac Lab writes for most callables anyway).
    if suffix.startswith("name:"):
        return suffix[len("name:") :]
    return PythonTag(tag=suffix, value=value)


IsaacLabLoader.add_multi_constructor("tag:yaml.org,2002:python/", _construct_python)


def load_isaaclab_yaml(path: Path) -> Any:
    """Parse an Isaac Lab YAML dump. Raises ``yaml.YAMLError`` on malformed YAML."""
    with open(path, encoding="utf-8") as stream:
        return yaml.load(stream, Loader=IsaacLabLoader)


def callable_name(value: Any) -> str | None:
    """``module:attr`` of a dumped callable, whatever form the dumper chose, else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, PythonTag):
        return value.tag.split(":", 1)[-1]
    return None
