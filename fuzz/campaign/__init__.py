"""The fuzz campaign: supervised workers, crash isolation, triage and reports.

Each worker is a child process running one engine (:mod:`hakfuzz.engines`)
until a deadline.  Before any input touches the
native allocator the worker writes it to its journal, so a native crash that
kills the worker loses nothing: the supervisor recovers the input from the
journal, records the crash as a finding and starts a new worker.  Findings are
deduplicated by signature, minimised, and written to
``corpus/findings/<signature>.json`` ready to replay.
"""
