"""Where the package's installed data (config/, launch/) lives, in a colcon install or a source tree.

Nodes look files up by name (``mapping: ps4``), so they need one answer that works after
``colcon build`` (the ament share directory) and in the pip/editable set-up, where nothing is
registered in the ament index and the source package's ``config``/``launch`` links are the data.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = "spot_policy"


def share_dir() -> Path:
    """The ament share directory of ``spot_policy`` if registered, else the source package folder."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError, OSError, ValueError):
        # Not importable, AMENT_PREFIX_PATH unset (OSError), or the package is not registered
        # (PackageNotFoundError is a KeyError): run from the source tree.
        return Path(__file__).resolve().parents[2]


def config_dir() -> Path:
    """The package's config folder (the workspace's ``config/``)."""
    return share_dir() / "config"
