"""Mutation testing of the fuzzing engines: does the framework catch real bugs.

Each mutant (``native/mutants/NAME.patch`` + ``NAME.md``) puts one real bug
class back into the allocator; :mod:`hakfuzz.native._mutants` builds it like a
variant.  A kill campaign (:func:`run_campaign`) runs corpus replay, then the
Hypothesis state machine and the parallel stress engine in turns, each in a
child process, until one of them kills the mutant (a divergence, a driver
oracle, a crash or a hang) or its time is up, and minimises the killing
program.  ``hakfuzz mutants`` prints the table; a survivor is a hole in the
oracles or the generators.
"""

from hakfuzz.mutants.campaign import (
    ENGINES,
    CampaignOptions,
    MutantResult,
    run_campaign,
    run_mutant,
)
from hakfuzz.mutants.supervise import EngineRun, Kill

__all__ = [
    "ENGINES",
    "CampaignOptions",
    "EngineRun",
    "Kill",
    "MutantResult",
    "run_campaign",
    "run_mutant",
]
