"""A Spot API emulator: bosdyn-client's services over TLS, with MuJoCo Spot as the robot's body."""

from spot_hw_bridge.emulator.server import FAULTS, Faults, SpotEmulator

__all__ = ["FAULTS", "Faults", "SpotEmulator"]
