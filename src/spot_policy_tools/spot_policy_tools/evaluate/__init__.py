"""``spot-policy evaluate``: judge a policy across scenarios, independently of how it was trained.

Pure logic (no ROS): :mod:`.scenario` (the YAML a test engineer writes), :mod:`.metrics` (what is
measured per trial, one place for every definition), :mod:`.stats` (aggregation, confidence
intervals), :mod:`.verdict` (thresholds, suite score), :mod:`.compare` (baseline regressions,
policies side by side), :mod:`.report` (results.json, report.html). Running trials over DDS:
:mod:`.driver` (the harness node), :mod:`.trial`, :mod:`.runner` (workers, Ray); :mod:`.cli`.
"""
