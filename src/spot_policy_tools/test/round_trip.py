"""Record now, replay now: the check every test that makes a fresh recording applies to it."""

from __future__ import annotations

from pathlib import Path

from spot_policy_tools.replay import ReplayError, ReplayReport, read_recording, recorded_policy, replay

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
