"""larson, real programs and the allocators they run under (any LD_PRELOAD library).

- :mod:`~hakfuzz.perf.larson.runner`: run larson under one allocator, prove who
  served it, and compare allocators side by side (interleaved runs).
- :mod:`~hakfuzz.perf.larson.peers`: the names ``--allocator`` takes (what a
  target is, and the proof that it served a run: :mod:`hakfuzz.targets`).
- :mod:`~hakfuzz.perf.larson.stability`: the stability protocol (docs/glossary.md).
- :mod:`~hakfuzz.perf.larson.preload`: real programs under ``libhakmem.so`` or
  any other target, compared with a glibc run.
- :mod:`~hakfuzz._process`: measured child processes (peak RSS) and the
  evidence they print.
"""

from hakfuzz.perf.larson.peers import ALLOCATORS, PEERS, find_library, parse_allocators
from hakfuzz.perf.larson.runner import (
    Comparison,
    LarsonConfig,
    RunResult,
    Summary,
    compare,
    run_once,
)

__all__ = [
    "ALLOCATORS",
    "PEERS",
    "Comparison",
    "LarsonConfig",
    "RunResult",
    "Summary",
    "compare",
    "find_library",
    "parse_allocators",
    "run_once",
]
