"""The differential engine: model and native allocator in lockstep.

A Program runs on both and they are compared after every op (exact mode).
"""

from hakfuzz.differential.executor import (
    DifferentialExecutor,
    DifferentialSession,
    Divergence,
    run_differential,
)

__all__ = ["DifferentialExecutor", "DifferentialSession", "Divergence", "run_differential"]
