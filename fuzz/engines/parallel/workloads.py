"""Every seeded parallel workload, by the name ``hakfuzz stress --workload`` takes.

The generators live by concern: :mod:`.generators` (larson, producer/consumer,
churn, mixed, pressure), :mod:`.storms` (every thread freeing into every other
thread's slabs at once, classes filled to their caps) and
:mod:`.generators_churn` (thousands of thread lifetimes on more than 16
pthreads).
"""

from __future__ import annotations

from hakfuzz.engines.parallel.generators import (
    Generator,
    churn,
    larson,
    mixed,
    pressure,
    producer_consumer,
)
from hakfuzz.engines.parallel.generators_churn import CHURN_WORKLOADS
from hakfuzz.engines.parallel.storms import EXTRA_WORKLOADS

WORKLOADS: dict[str, Generator] = {
    "larson": larson,
    "producer_consumer": producer_consumer,
    "churn": churn,
    "mixed": mixed,
    "pressure": pressure,
    **EXTRA_WORKLOADS,
    **CHURN_WORKLOADS,
}
"""Every workload, by name, in the order campaigns cycle through them."""

__all__ = ["WORKLOADS", "Generator"]
