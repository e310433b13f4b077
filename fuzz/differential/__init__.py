"""The differential engine: a Program run on the model and the native
allocator in lockstep, compared after every op (exact mode)."""

from hakfuzz.differential.executor import (
    DifferentialExecutor,
    DifferentialSession,
    Divergence,
    run_differential,
)

__all__ = ["DifferentialExecutor", "DifferentialSession", "Divergence", "run_differential"]
