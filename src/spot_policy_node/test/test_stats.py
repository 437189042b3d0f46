"""Rolling figures: what diagnostics compute on a node's control thread."""

from __future__ import annotations

import subprocess
import sys

from spot_policy.core.stats import Rolling


def test_rolling_percentiles() -> None:
    rolling = Rolling(size=3)
    assert rolling.median != rolling.median  # NaN while empty
    for value in (10.0, 1.0, 2.0, 3.0):  # the first falls out of the window
        rolling.add(value)
    assert len(rolling) == 3
    assert rolling.median == 2.0
    assert 2.9 < rolling.p99 <= 3.0


def test_the_first_percentile_imports_nothing() -> None:
    """numpy loads numpy.ma lazily on the first percentile (10-20 ms): a node's first diagnostics
    would pay for it on its control thread. Importing the module must have done it already."""
    probe = (
        "import sys\n"
        "from spot_policy.core.stats import Rolling\n"
        "rolling = Rolling()\n"
        "rolling.add(1.0)\n"
        "before = set(sys.modules)\n"
        "rolling.median, rolling.p99\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
