"""Rich consoles that read well in a terminal and in a log.

In a terminal, rich fits output to the window.  Elsewhere (tox, CI, a pipe)
it would wrap every line at 80 columns, mid-word; there, lines are not
wrapped and tables get room for every column.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

_LOG_WIDTH = 200


def console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that does not wrap when it is not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() and int(columns) > 0 else _LOG_WIDTH
    return Console(stderr=stderr, width=width, soft_wrap=True)
