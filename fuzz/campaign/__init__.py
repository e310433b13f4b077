"""The fuzz campaign: supervised workers, crash isolation, triage and reports.

Each worker is a child process running one engine (``hypothesis``,
``atheris``, ``parallel`` or ``preload``) until a deadline.  Before any input touches the
native allocator the worker writes it to its journal, so a native crash that
kills the worker loses nothing: the supervisor recovers the input from the
journal, records the crash as a finding and starts a new worker.  Findings are
deduplicated by signature, minimised, and written to
``corpus/findings/<signature>.json`` ready to replay.
"""

from hakfuzz._argtypes import parse_names

ENGINES: tuple[str, ...] = ("hypothesis", "atheris", "parallel", "preload")
"""The campaign's engines, in the order workers are given to them."""


def parse_engines(text: str, prog: str) -> tuple[str, ...]:
    """``all`` or a comma list of engine names, checked; a usage error names ``prog``."""
    return parse_names(text, ENGINES, "engine", prog)


__all__ = ["ENGINES", "parse_engines"]
