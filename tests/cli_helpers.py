"""Shared helpers of the tests that drive the ``hakfuzz`` command line.

``hakfuzz(...)`` runs one command to completion in a child process (wide
columns, so no table is cut); ``LiveCampaign`` starts ``hakfuzz fuzz`` and
reads its stderr line by line, so a test can wait for an event (a finding
shown, a notice) and then act, never waiting on a clock: ``PATIENCE`` is an
upper bound for a loaded 2-core machine, not an expectation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

PATIENCE = 240.0


def hakfuzz(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``hakfuzz ARGS`` in ``cwd`` and wait for it."""
    return subprocess.run(
        [sys.executable, "-m", "hakfuzz.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "250"},
        check=False,
    )


class LiveCampaign:
    """``hakfuzz fuzz ARGS --json`` in a child process, its stderr read line by line."""

    def __init__(self, cwd: Path, *args: str) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.cwd = cwd
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hakfuzz.cli", "fuzz", "--json", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr: list[str] = []

    def wait_for(self, *texts: str) -> None:
        """Read stderr until every one of ``texts`` was in some line, in any order.

        Lines read by an earlier wait count too; fail the test if one never comes.
        """
        assert self.proc.stderr is not None
        missing = [t for t in texts if not any(t in line for line in self.stderr)]
        deadline = time.monotonic() + PATIENCE
        while missing and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.stderr.append(line)
            missing = [t for t in missing if t not in line]
        if missing:
            self.proc.kill()
            pytest.fail(f"never saw {missing!r}; stderr:\n{''.join(self.stderr)[-3000:]}")

    def finish(self) -> tuple[int, dict[str, object]]:
        """Exit status and the JSON document printed (no traceback allowed on stderr)."""
        out, err = self.proc.communicate(timeout=PATIENCE)
        self.stderr.append(err)
        assert "Traceback" not in "".join(self.stderr), "".join(self.stderr)[-3000:]
        doc: dict[str, object] = json.loads(out)
        return self.proc.returncode, doc
