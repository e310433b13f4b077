"""The engines: the sources of Programs a campaign runs.

- ``hypothesis`` (:mod:`.hypothesis_engine`): the state machine of
  :mod:`.statemachine` over the configs and ops of :mod:`.strategies`,
  in lockstep with the model; against a foreign target,
  :mod:`.foreign_machine` runs each example in a serving child;
- ``atheris`` (:mod:`.atheris_engine`): coverage-guided bytes decoded to
  Programs (libFuzzer inside);
- ``parallel`` (:mod:`.parallel_engine`): the seeded multi-threaded workloads
  of :mod:`.parallel` on the C driver;
- ``preload`` (:mod:`.preload_engine`): real programs and driver workloads
  under ``LD_PRELOAD`` of the allocator, compared with a glibc run.

:mod:`.configs` (boundary values, swarm configs) and :mod:`.macros` (deep
states in a few ops) are shared by all of them.
"""

from hakfuzz._argtypes import parse_names

ENGINES: tuple[str, ...] = ("hypothesis", "atheris", "parallel", "preload")
"""The engines, in the order a campaign gives them workers."""


def parse_engines(text: str, prog: str) -> tuple[str, ...]:
    """``all`` or a comma list of engine names, checked; a usage error names ``prog``."""
    return parse_names(text, ENGINES, "engine", prog)


__all__ = ["ENGINES", "parse_engines"]
