"""The worker -> supervisor protocol: one JSON object per stdout line.

``stats``: cumulative ``execs`` (programs or inputs run), ``ops`` and
``coverage`` (the engine's own measure), ``elapsed`` seconds, and
``reached``: programs per milestone and config boundary (see :mod:`reached`);
``finding``: a failure the worker caught itself (the program as JSON text);
``notice``: a one-line message for the user; ``done``: a clean exit.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping

from hakfuzz.findings import Finding
from hakfuzz.program.jsonio import dump_program


class Emitter:
    """Writes events; rate-limits ``stats`` to one every ``interval`` seconds."""

    def __init__(self, interval: float = 0.5) -> None:
        self.started = time.monotonic()
        self.interval = interval
        self._last = 0.0

    def _send(self, event: Mapping[str, object]) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    def stats(
        self,
        execs: int,
        ops: int,
        coverage: int,
        *,
        force: bool = False,
        reached: dict[str, int] | None = None,
    ) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            self._send(
                {
                    "event": "stats",
                    "execs": execs,
                    "ops": ops,
                    "coverage": coverage,
                    "elapsed": round(now - self.started, 3),
                    "reached": reached or {},
                }
            )

    def finding(self, finding: Finding) -> None:
        self._send(
            {
                "event": "finding",
                "engine": finding.engine,
                "kind": finding.kind,
                "detail": finding.detail,
                "message": finding.message,
                "op_index": finding.op_index,
                "seed": finding.seed,
                "variant": finding.variant,
                "program": dump_program(finding.program),
                "job": finding.extra.get("job"),
            }
        )

    def notice(self, message: str) -> None:
        self._send({"event": "notice", "message": message})

    def done(self) -> None:
        self._send({"event": "done"})
