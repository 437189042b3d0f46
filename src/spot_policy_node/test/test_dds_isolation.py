"""spot_policy.ros.dds_isolation.dds_environment: a block with another process's DDS settings."""

from __future__ import annotations

import os

import pytest

from spot_policy.ros.dds_isolation import dds_environment


def test_dds_environment_applies_the_given_settings_and_restores_the_processs_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROS_DOMAIN_ID", "7")
    monkeypatch.setenv("ROS_STATIC_PEERS", "10.0.0.1")
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    monkeypatch.setenv("HOME_OF_SOMETHING_ELSE", "kept")
    given = {"ROS_DOMAIN_ID": "120", "FASTDDS_DEFAULT_PROFILES_FILE": "/p.xml", "PATH": "/elsewhere"}
    with dds_environment(given):
        assert os.environ["ROS_DOMAIN_ID"] == "120" and os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] == "/p.xml"
        assert "ROS_STATIC_PEERS" not in os.environ  # the nodes' environment has none: neither has this block
        assert os.environ["PATH"] != "/elsewhere" and os.environ["HOME_OF_SOMETHING_ELSE"] == "kept"  # DDS only
    assert os.environ["ROS_DOMAIN_ID"] == "7" and os.environ["ROS_STATIC_PEERS"] == "10.0.0.1"
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ
