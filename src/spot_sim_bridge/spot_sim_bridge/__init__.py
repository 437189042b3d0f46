"""Spot in a simulator behind the spot_policy topic contract."""
