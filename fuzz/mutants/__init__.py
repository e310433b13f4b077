"""Mutation testing of the fuzzing campaign: does it catch real bugs it has never seen.

Each mutant (``native/mutants/NAME.patch`` + ``NAME.md``, or a user's own
directory of patches) puts one real bug class back into the allocator;
:mod:`hakfuzz.native._mutants` builds it like a variant.  A kill campaign
(:func:`run_mutant`) is the ``hakfuzz fuzz`` campaign aimed at the mutant,
stopped at its first finding.  ``hakfuzz mutants`` prints the table; a
survivor is a hole in the oracles or the generators.
"""

from hakfuzz.mutants.kill import KillOptions, MutantResult, run_mutant

__all__ = ["KillOptions", "MutantResult", "run_mutant"]
