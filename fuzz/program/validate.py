"""Static validation of a Program, shared by every loader.

The rules are those of docs/program.md: field ranges, ``thread < threads``,
the handle rules (a creating op names a handle never used before; every
other op names a live handle; ``free`` and ``realloc`` to size 0 kill it)
and the bound on big blocks (at most MAX_BIG_LIVE handles hold a size above
MAX_SIZE at once).  A ``hakfuzz-program/1`` document is checked against /1's
narrower rules (its kinds, sizes up to MAX_SIZE) by the JSON loader.

The validator treats every creating op as creating a live handle.  At run
time an allocation may return NULL (OOM policy ``null``), leaving its handle
dead; executors then skip every later op naming that handle, identically.

``validate`` is the entry point (re-exported by ``hakfuzz.program``); the
other names are the checks the JSON loader shares with it, so both give the
same messages.
"""

from __future__ import annotations

from hakfuzz.model.options import OPTION, OPTIONS
from hakfuzz.program.churn import check_churn
from hakfuzz.program.errors import ProgramError
from hakfuzz.program.model import (
    BIG_KINDS,
    CONFIG_FIELDS,
    CREATING_KINDS,
    FORMAT,
    FORMAT_V1,
    MAX_ALIGN,
    MAX_BIG_LIVE,
    MAX_BIG_SIZE,
    MAX_CALLOC_BYTES,
    MAX_COUNT,
    MAX_OPS,
    MAX_SEED,
    MAX_SIZE,
    MAX_THREADS,
    MIN_ALIGN,
    MIN_ALIGNED_ALLOC_ALIGN,
    NO_HANDLE,
    OP_FIELDS,
    OVERFLOW_COUNT,
    TARGET_FIELDS,
    V1_KINDS,
    Op,
    OpKind,
    Program,
    ProgramConfig,
    ProgramTarget,
)

MAX_HANDLE = (1 << 31) - 1

# Inclusive ranges of the int fields of an op ("align" is checked apart).
OP_RANGES: dict[str, tuple[int, int]] = {
    "handle": (0, MAX_HANDLE),
    "size": (0, MAX_SIZE),
    "count": (0, MAX_COUNT),
    "align": (MIN_ALIGN, MAX_ALIGN),
    "seed": (0, MAX_SEED),
}

# Inclusive ranges of the int fields of the config: the C option table's.
CONFIG_RANGES: dict[str, tuple[int, int]] = {
    o.name: (o.min, o.max) for o in OPTIONS if o.type in ("u32", "u64")
}
CONFIG_BOOLS = tuple(o.name for o in OPTIONS if o.type == "bool")

_ALIGNED_ALLOC = OpKind.ALIGNED_ALLOC
_REALLOC = OpKind.REALLOC

_OP_DEFAULTS = Op(OpKind.FLUSH)


def validate(program: Program, source: str = "<program>") -> None:
    """Raise ProgramError (naming ``source``) unless ``program`` is valid."""
    if program.format != FORMAT:
        raise ProgramError(
            f"expected {FORMAT!r}, got {program.format!r}",
            path=source, field="format",
        )
    if not isinstance(program.description, str):
        raise ProgramError("expected a string", path=source, field="description")
    if program.target is not None and not (
        isinstance(program.target, ProgramTarget)
        and all(isinstance(getattr(program.target, name), str) for name in TARGET_FIELDS)
    ):
        raise ProgramError("expected a ProgramTarget of three strings", path=source,
                           field="target")
    if not isinstance(program.config, ProgramConfig):
        raise ProgramError("expected a ProgramConfig", path=source, field="config")
    check_config(program.config, source)
    check_threads(program.threads, source)
    for pair in program.target_config:
        if (not isinstance(pair, tuple) or len(pair) != 2
                or not all(isinstance(part, str) for part in pair) or not pair[0]
                or "=" in pair[0]):
            raise ProgramError(f"expected (key, value) strings, got {pair!r}", path=source,
                               field="target_config")
    if not isinstance(program.ops, tuple):
        raise ProgramError(
            f"expected a tuple of Op, got {type(program.ops).__name__}",
            path=source, field="ops",
        )
    if len(program.ops) > MAX_OPS:
        raise ProgramError(
            f"{len(program.ops)} ops; at most {MAX_OPS} are allowed",
            path=source, field="ops",
        )
    checker = OpChecker(source, program.threads, FORMAT)
    for index, op in enumerate(program.ops):
        checker.check(index, op)
    if program.churn is not None:
        check_churn(program.churn, source)


def is_int(value: object) -> bool:
    """True for an int that is not a bool."""
    return type(value) is int


def describe(value: object) -> str:
    """A value as the user wrote it, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def check_threads(threads: object, source: str) -> None:
    """``threads`` is an int in 1..MAX_THREADS."""
    if not is_int(threads):
        raise ProgramError(
            f"expected an integer, got {describe(threads)}",
            path=source, field="threads",
        )
    assert isinstance(threads, int)
    if not 1 <= threads <= MAX_THREADS:
        raise ProgramError(
            f"{threads} is out of range 1..{MAX_THREADS}",
            path=source, field="threads",
        )


def check_config(config: ProgramConfig, source: str) -> None:
    """Every field of ``config`` has the right type and is in range."""
    for name in CONFIG_FIELDS:
        check_config_value(name, getattr(config, name), source)


def check_config_value(name: str, value: object, source: str) -> None:
    """One config field; ``name`` must be a known field."""
    where = f"config.{name}"
    names = OPTION[name].values
    if names:
        if value not in names or not isinstance(value, str):
            raise ProgramError(
                f"expected {' or '.join(map(describe, names))}, got {describe(value)}",
                path=source, field=where,
            )
    elif name in CONFIG_BOOLS:
        if not isinstance(value, bool):
            raise ProgramError(
                f"expected true or false, got {describe(value)}",
                path=source, field=where,
            )
    else:
        low, high = CONFIG_RANGES[name]
        if not is_int(value):
            raise ProgramError(
                f"expected an integer, got {describe(value)}",
                path=source, field=where,
            )
        assert isinstance(value, int)
        if not low <= value <= high:
            raise ProgramError(
                f"{value} is out of range {low}..{high}",
                path=source, field=where,
            )


class OpChecker:
    """Checks ops one by one, in program order, tracking live handles.

    ``version`` is the format the ops are written in: ``FORMAT_V1`` allows
    only /1's kinds and sizes.
    """

    __slots__ = ("_big", "_created", "_killed", "_source", "_threads", "_v1")

    def __init__(self, source: str, threads: int, version: str = FORMAT) -> None:
        self._source = source
        self._threads = threads
        self._v1 = version == FORMAT_V1
        self._created: dict[int, int] = {}  # handle -> index of creating op
        self._killed: dict[int, int] = {}  # handle -> index of killing op
        self._big: set[int] = set()  # live handles whose size is above MAX_SIZE

    def error(self, index: int, op_kind: str | None, field: str | None,
              reason: str) -> ProgramError:
        """A ProgramError located at op ``index``."""
        return ProgramError(
            reason, path=self._source, op_index=index, op_kind=op_kind,
            field=field,
        )

    def check(self, index: int, op: object) -> None:
        """Raise ProgramError unless ``op`` is valid at position ``index``."""
        if not isinstance(op, Op):
            raise self.error(index, None, None, f"expected an Op, got {op!r}")
        if not isinstance(op.kind, OpKind):
            raise self.error(index, None, "op", f"unknown op {op.kind!r}")
        name = op.kind.json_name
        if self._v1 and op.kind not in V1_KINDS:
            raise self.error(
                index, name, "op",
                f"{name} is an op of {FORMAT}, not of {FORMAT_V1} (the format of "
                "this program)",
            )
        used = OP_FIELDS[op.kind]
        self.check_thread(index, name, op.thread)
        for field in ("handle", "size", "count", "align", "seed"):
            value = getattr(op, field)
            if field in used:
                if field == "count" and value == OVERFLOW_COUNT and op.size >= 2:
                    continue  # the overflowing calloc: NULL/ENOMEM expected
                self.check_range(index, name, field, value, op.kind)
            elif value != getattr(_OP_DEFAULTS, field):
                raise self.error(
                    index, name, field,
                    f"not used by {name} (leave it at its default)",
                )
        if (op.kind is OpKind.CALLOC and op.count != OVERFLOW_COUNT
                and op.count * op.size > MAX_CALLOC_BYTES):
            raise self.error(
                index, name, "count",
                f"count * size = {op.count * op.size} is over the limit "
                f"{MAX_CALLOC_BYTES} (1 MiB)",
            )
        if op.handle != NO_HANDLE:
            self._check_handle(index, name, op)

    def check_thread(self, index: int, name: str, thread: object) -> None:
        """``thread`` is an int in 0..threads-1."""
        if not is_int(thread):
            raise self.error(
                index, name, "thread",
                f"expected an integer, got {describe(thread)}",
            )
        assert isinstance(thread, int)
        if not 0 <= thread < self._threads:
            plural = "s" if self._threads > 1 else ""
            raise self.error(
                index, name, "thread",
                f"{thread} is out of range 0..{self._threads - 1} "
                f"(the program has {self._threads} thread{plural})",
            )

    def check_range(self, index: int, name: str, field: str,
                    value: object, kind: OpKind | None = None) -> None:
        """One int field of an op: type and range (sizes and aligns by ``kind``)."""
        if not is_int(value):
            raise self.error(
                index, name, field,
                f"expected an integer, got {describe(value)}",
            )
        assert isinstance(value, int)
        low, high = OP_RANGES[field]
        if field == "align":
            if kind is _ALIGNED_ALLOC:
                low = MIN_ALIGNED_ALLOC_ALIGN
            if not (low <= value <= high and value & (value - 1) == 0):
                raise self.error(
                    index, name, field,
                    f"{value} is not a power of two in {low}..{high}",
                )
            return
        if field == "size" and kind in BIG_KINDS and not self._v1:
            high = MAX_BIG_SIZE
        if not low <= value <= high:
            note = ""
            if field == "size" and self._v1 and kind in BIG_KINDS and value > high:
                note = f" ({FORMAT_V1}; {FORMAT} allows up to {MAX_BIG_SIZE})"
            raise self.error(
                index, name, field,
                f"{value} is out of range {low}..{high}{note}",
            )

    def _check_handle(self, index: int, name: str, op: Op) -> None:
        handle = op.handle
        if op.kind in CREATING_KINDS:
            if handle in self._created:
                raise self.error(
                    index, name, "handle",
                    f"{handle} is already used (created by op "
                    f"{self._created[handle]}); a creating op needs a fresh "
                    "handle",
                )
            self._created[handle] = index
            if op.size > MAX_SIZE:
                self._grow_big(index, name, handle)
            return
        if handle not in self._created:
            raise self.error(
                index, name, "handle", f"{handle} is not live (never created)"
            )
        if handle in self._killed:
            raise self.error(
                index, name, "handle",
                f"{handle} is not live (freed by op {self._killed[handle]})",
            )
        if op.kind is OpKind.FREE or (op.kind is _REALLOC and op.size == 0):
            self._killed[handle] = index
            self._big.discard(handle)
        elif op.kind is _REALLOC:
            if op.size > MAX_SIZE:
                self._grow_big(index, name, handle)
            else:
                self._big.discard(handle)

    def _grow_big(self, index: int, name: str, handle: int) -> None:
        big = self._big
        if handle not in big and len(big) >= MAX_BIG_LIVE:
            raise self.error(
                index, name, "size",
                f"a {MAX_BIG_LIVE + 1}th block above {MAX_SIZE} bytes would be live "
                f"(handles {', '.join(map(str, sorted(big)))} hold big blocks; at most "
                f"{MAX_BIG_LIVE} may be live at once)",
            )
        big.add(handle)
