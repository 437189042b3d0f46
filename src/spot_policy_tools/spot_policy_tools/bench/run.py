"""``spot-policy bench``: speed figures, each beside a baseline measured in the same run.

Ratios to a baseline hold on a noisy machine where absolute numbers do not; measurements of a
figure and its baseline are interleaved in blocks for the same reason. Sections: the policy node's
(:mod:`.policy`), the simulator's (:mod:`.sim`) and the robot link's (:mod:`.robot`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from spot_policy_tools.bench import evaluate, policy, robot, sim
from spot_policy_tools.bench.common import Row, Section, machine, table

SECTIONS: dict[str, Section] = {**policy.SECTIONS, **sim.SECTIONS, **robot.SECTIONS, **evaluate.SECTIONS}
#: Sections that take minutes: only when asked for by name.
LONG = frozenset({"evaluate_standard"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        default=",".join(s for s in SECTIONS if s not in LONG),
        help=f"comma-separated sections to run (default: all but {', '.join(sorted(LONG))}: "
        f"{','.join(s for s in SECTIONS if s not in LONG)})",
    )
    parser.add_argument("--policy", default="spot_flat_mjx", help="policy to benchmark (default: the shipped one)")
    parser.add_argument("--iterations", type=int, default=5000, help="policy-step samples (default: 5000)")
    parser.add_argument("--pings", type=int, default=1000, help="DDS round trips (default: 1000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the timed simulator runs (default: 5)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="evaluate: rounds of (one trial, the suite on 1 worker, on 2, on 2 with separate processes), "
        "interleaved; medians (default: 3)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(args: argparse.Namespace) -> int:
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        print(
            f"spot-policy bench: unknown section(s) {', '.join(unknown)}; have: {', '.join(SECTIONS)}", file=sys.stderr
        )
        return 2
    rows: list[Row] = []
    for name in wanted:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        rows += SECTIONS[name](args)
    if args.json:
        print(json.dumps({"machine": machine(), "rows": [{**asdict(r), "ratio": r.ratio} for r in rows]}, indent=2))
    else:
        print(f"machine: {machine()}")
        print(table(rows))
    return 0
