"""``python -m spot_hw_bridge.emulator``: the emulator without the spot-policy CLI (benchmarks start it so)."""

import argparse
import sys

from spot_hw_bridge.emulator.server import __doc__ as _doc
from spot_hw_bridge.emulator.server import add_arguments, main

parser = argparse.ArgumentParser(
    prog="python -m spot_hw_bridge.emulator", description=_doc, formatter_class=argparse.RawDescriptionHelpFormatter
)
add_arguments(parser)
sys.exit(main(parser.parse_args()))
