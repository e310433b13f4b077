"""``python -m hakfuzz.campaign.child``: one differential run, in its own process.

Runs the program on stdin with ``--variant V``.  Prints one JSON line
(``{"divergence_field": ..., "message": ...}``); a native crash kills this
process instead of its parent.
"""

from __future__ import annotations

import argparse
import json
import sys

from hakfuzz.differential import DifferentialExecutor
from hakfuzz.program import loads_program
from hakfuzz.variants import load_module


def main() -> int:
    """Run the program on stdin; print the verdict as one JSON line."""
    parser = argparse.ArgumentParser(prog="hakfuzz.campaign.child")
    parser.add_argument("--variant", default="release")
    args = parser.parse_args()
    program = loads_program(sys.stdin.read(), source="<stdin>")

    divergence = DifferentialExecutor(load_module(args.variant)).run(program)
    out = {
        "divergence_field": None if divergence is None else divergence.field,
        "message": None if divergence is None else divergence.describe(),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
