"""Benchmarks of hakmem against glibc and peer allocators: engines, records, reports.

- :mod:`~hakfuzz.perf.bench.engines`: the registry (name → engine function).
- :mod:`~hakfuzz.perf.bench.model`: options in, rows of medians out.
- :mod:`~hakfuzz.perf.bench.larson_engine`, :mod:`~hakfuzz.perf.bench.malloc_engine`:
  the engines.
- :mod:`~hakfuzz.perf.bench.report`: Markdown table, JSON and the PNG chart.
"""

from hakfuzz.perf.bench.engines import ENGINES, select
from hakfuzz.perf.bench.model import BenchOptions, Engine, EngineResult, Progress, Row

__all__ = ["ENGINES", "BenchOptions", "Engine", "EngineResult", "Progress", "Row", "select"]
