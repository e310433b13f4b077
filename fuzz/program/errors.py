"""ProgramError: a malformed program, named by file, op index and field."""

from __future__ import annotations

from hakfuzz._errors import HakfuzzError


class ProgramError(HakfuzzError):
    """A program that is not valid.

    ``str(error)`` is one line naming the culprit, e.g.
    ``corpus/x.json: op 7 (free): field 'handle': 12 is not live``.
    The parts are kept as attributes: ``path`` (the file, or a label such as
    ``"<string>"``), ``op_index`` and ``op_kind`` (None outside an op),
    ``field`` (None when the error is not about one field; nested fields are
    dotted, e.g. ``"config.ss_cap"``), ``line``/``column`` (JSON syntax errors
    only) and ``reason`` (the message without the location).
    """

    exit_code = 2  # a malformed program is the user's input: a usage error

    def __init__(
        self,
        reason: str,
        *,
        path: str,
        op_index: int | None = None,
        op_kind: str | None = None,
        field: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.reason = reason
        self.path = path
        self.op_index = op_index
        self.op_kind = op_kind
        self.field = field
        self.line = line
        self.column = column
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [self.path]
        if self.line is not None:
            parts.append(f"line {self.line}, column {self.column}")
        if self.op_index is not None:
            kind = f" ({self.op_kind})" if self.op_kind else ""
            parts.append(f"op {self.op_index}{kind}")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        parts.append(self.reason)
        return ": ".join(parts)
