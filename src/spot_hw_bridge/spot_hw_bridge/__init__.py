"""Spot robot bridge (bosdyn-client) behind the spot_policy topic contract."""
