"""Benchmarks of hakmem against glibc and peer allocators: engines, records, reports.

- :mod:`~hakfuzz.bench.engines`: the registry (name → engine function).
- :mod:`~hakfuzz.bench.model`: options in, rows of medians out.
- :mod:`~hakfuzz.bench.larson_engine`, :mod:`~hakfuzz.bench.malloc_engine`:
  the engines.
- :mod:`~hakfuzz.bench.report`: Markdown table, JSON and the PNG chart.
"""

from hakfuzz.bench.engines import ENGINES, select
from hakfuzz.bench.model import BenchOptions, Engine, EngineResult, Progress, Row

__all__ = ["ENGINES", "BenchOptions", "Engine", "EngineResult", "Progress", "Row", "select"]
