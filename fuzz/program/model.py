"""The Program record: allocator config, thread count and ops over handles.

This is the in-memory form of a `hakfuzz-program/2` document (see
docs/program.md).  A `hakfuzz-program/1` document reads as the same records:
/2 only adds op kinds and widens sizes, so every /1 program is a /2 program
with the same meaning, and what is written is always /2.  Every engine
produces these records and every executor consumes them; ``jsonio`` and
``binary`` convert them to and from their stored forms, ``validate`` checks
them.

An ``Op`` is one flat record for every kind, so an executor dispatches on
``op.kind`` and reads plain ints: fields a kind does not use keep their
defaults (``handle == NO_HANDLE``, the others 0).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, cast

from hakfuzz.model.limits import CACHE_CAP_MAX as CACHE_CAP_MAX  # re-exported: imported widely
from hakfuzz.model.limits import U32_MAX as U32_MAX
from hakfuzz.model.limits import U64_MAX as U64_MAX
from hakfuzz.model.options import OPTION, OPTIONS
from hakfuzz.program.churn import ChurnSpec
from hakfuzz.program.errors import ProgramError

FORMAT = "hakfuzz-program/2"
"""The version every Program is in, and the one written."""
FORMAT_V1 = "hakfuzz-program/1"
"""The first version: still read (its ops and ranges are a subset of /2's)."""
READ_FORMATS = (FORMAT_V1, FORMAT)

# Program-format limits (docs/program.md).  The allocator's own limits live
# in hakmem.h (hakfuzz.model.limits) and its option table (docs/options.md).
MAX_THREADS = 16
MAX_OPS = 32768
MAX_SIZE = 65535
"""The largest size of /1, and of calloc's count and size in /2."""
MAX_BIG_SIZE = 8 << 20
"""The largest size of /2 (8 MiB, far past glibc's 128 KiB mmap threshold): one
op never touches more."""
MAX_BIG_LIVE = 4
"""At most this many handles may hold a size above MAX_SIZE at once, so a
program's big blocks stay under 32 MiB however long it is."""
MAX_COUNT = 65534  # a literal calloc count; see OVERFLOW_COUNT
OVERFLOW_COUNT = 1 << 63
"""The one calloc count above MAX_COUNT: with size >= 2, count * size overflows
a 64-bit size_t, and calloc must return NULL with ENOMEM."""
MAX_SEED = 255
MIN_ALIGN = 8  # posix_memalign: a power-of-two multiple of sizeof(void *)
MIN_ALIGNED_ALLOC_ALIGN = 1  # aligned_alloc: any power of two
MAX_ALIGN = 4096
MAX_CALLOC_BYTES = 1 << 20  # count * size of one calloc
REFILL_BATCH_MAX = OPTION["refill_batch"].max

NO_HANDLE = -1
"""The ``handle`` of an op that names none (flush, thread_exit, check, and the
ops on NULL: free_null, usable_size_null)."""

OomPolicy = Literal["libc", "null"]
OOM_POLICIES = cast(tuple[OomPolicy, ...], OPTION["oom_policy"].values)


class OpKind(enum.IntEnum):
    """The kinds of op; values are stable (a C driver may mirror them)."""

    ALLOC = 0
    LIBC_ALLOC = 1
    CALLOC = 2
    MEMALIGN = 3
    REALLOC = 4
    FREE = 5
    WRITE = 6
    VERIFY = 7
    FLUSH = 8
    THREAD_EXIT = 9
    CHECK = 10
    # hakfuzz-program/2
    ALIGNED_ALLOC = 11
    REALLOC_NULL = 12
    FREE_NULL = 13
    USABLE_SIZE = 14
    USABLE_SIZE_NULL = 15

    @property
    def json_name(self) -> str:
        """The name in the JSON form, e.g. ``"libc_alloc"``."""
        return self.name.lower()


KIND_BY_NAME: dict[str, OpKind] = {kind.json_name: kind for kind in OpKind}

V1_KINDS = frozenset(kind for kind in OpKind if kind <= OpKind.CHECK)
"""The kinds a ``hakfuzz-program/1`` document may use."""

CREATING_KINDS = frozenset({
    OpKind.ALLOC, OpKind.LIBC_ALLOC, OpKind.CALLOC, OpKind.MEMALIGN,
    OpKind.ALIGNED_ALLOC, OpKind.REALLOC_NULL,
})
"""Kinds that create a fresh handle."""

HANDLE_KINDS = frozenset(
    {OpKind.REALLOC, OpKind.FREE, OpKind.WRITE, OpKind.VERIFY, OpKind.USABLE_SIZE}
)
"""Kinds that name a live handle."""

BIG_KINDS = frozenset({
    OpKind.ALLOC, OpKind.LIBC_ALLOC, OpKind.MEMALIGN, OpKind.ALIGNED_ALLOC,
    OpKind.REALLOC, OpKind.REALLOC_NULL,
})
"""Kinds whose ``size`` may exceed MAX_SIZE (up to MAX_BIG_SIZE) in /2."""

OP_FIELDS: dict[OpKind, tuple[str, ...]] = {
    OpKind.ALLOC: ("handle", "size"),
    OpKind.LIBC_ALLOC: ("handle", "size"),
    OpKind.CALLOC: ("handle", "count", "size"),
    OpKind.MEMALIGN: ("handle", "align", "size"),
    OpKind.REALLOC: ("handle", "size"),
    OpKind.FREE: ("handle",),
    OpKind.WRITE: ("handle", "seed"),
    OpKind.VERIFY: ("handle",),
    OpKind.FLUSH: (),
    OpKind.THREAD_EXIT: (),
    OpKind.CHECK: (),
    OpKind.ALIGNED_ALLOC: ("handle", "align", "size"),
    OpKind.REALLOC_NULL: ("handle", "size"),
    OpKind.FREE_NULL: (),
    OpKind.USABLE_SIZE: ("handle",),
    OpKind.USABLE_SIZE_NULL: (),
}
"""The fields each kind uses besides ``thread``, in JSON order."""


@dataclass(frozen=True, slots=True, init=False)
class Op:
    """One op of a program.  Use the named constructors (``Op.alloc`` ...)."""

    kind: OpKind
    thread: int
    handle: int
    size: int
    count: int
    align: int
    seed: int

    def __init__(
        self,
        kind: OpKind,
        thread: int = 0,
        handle: int = NO_HANDLE,
        size: int = 0,
        count: int = 0,
        align: int = 0,
        seed: int = 0,
    ) -> None:
        # The generated frozen __init__ goes through object.__setattr__ once
        # per field; the binary decoder builds an Op per input byte or two
        # on every atheris exec, so set the slots directly (twice as fast).
        _set_kind(self, kind)
        _set_thread(self, thread)
        _set_handle(self, handle)
        _set_size(self, size)
        _set_count(self, count)
        _set_align(self, align)
        _set_seed(self, seed)

    @classmethod
    def alloc(cls, handle: int, size: int, thread: int = 0) -> Op:
        """``hak_malloc(size)``."""
        return cls(OpKind.ALLOC, thread, handle, size)

    @classmethod
    def libc_alloc(cls, handle: int, size: int, thread: int = 0) -> Op:
        """Malloc from glibc (a foreign pointer)."""
        return cls(OpKind.LIBC_ALLOC, thread, handle, size)

    @classmethod
    def calloc(cls, handle: int, count: int, size: int, thread: int = 0) -> Op:
        """``hak_calloc(count, size)``."""
        return cls(OpKind.CALLOC, thread, handle, size, count)

    @classmethod
    def memalign(cls, handle: int, align: int, size: int, thread: int = 0) -> Op:
        """``hak_posix_memalign(align, size)``."""
        return cls(OpKind.MEMALIGN, thread, handle, size, 0, align)

    @classmethod
    def realloc(cls, handle: int, size: int, thread: int = 0) -> Op:
        """``hak_realloc``; the handle names the result (size 0 frees it)."""
        return cls(OpKind.REALLOC, thread, handle, size)

    @classmethod
    def free(cls, handle: int, thread: int = 0) -> Op:
        """``hak_free``."""
        return cls(OpKind.FREE, thread, handle)

    @classmethod
    def write(cls, handle: int, seed: int, thread: int = 0) -> Op:
        """Fill the block with the pattern of (handle, seed)."""
        return cls(OpKind.WRITE, thread, handle, 0, 0, 0, seed)

    @classmethod
    def verify(cls, handle: int, thread: int = 0) -> Op:
        """Check the last pattern written."""
        return cls(OpKind.VERIFY, thread, handle)

    @classmethod
    def flush(cls, thread: int = 0) -> Op:
        """``hak_flush()``."""
        return cls(OpKind.FLUSH, thread)

    @classmethod
    def thread_exit(cls, thread: int = 0) -> Op:
        """``hak_thread_exit()``."""
        return cls(OpKind.THREAD_EXIT, thread)

    @classmethod
    def check(cls, thread: int = 0) -> Op:
        """``hak_check()`` must be clean."""
        return cls(OpKind.CHECK, thread)

    @classmethod
    def aligned_alloc(cls, handle: int, align: int, size: int, thread: int = 0) -> Op:
        """``hak_aligned_alloc(align, size)``."""
        return cls(OpKind.ALIGNED_ALLOC, thread, handle, size, 0, align)

    @classmethod
    def realloc_null(cls, handle: int, size: int, thread: int = 0) -> Op:
        """``hak_realloc(NULL, size)``: a new block (even for size 0), named ``handle``."""
        return cls(OpKind.REALLOC_NULL, thread, handle, size)

    @classmethod
    def free_null(cls, thread: int = 0) -> Op:
        """``hak_free(NULL)``: must change nothing."""
        return cls(OpKind.FREE_NULL, thread)

    @classmethod
    def usable_size(cls, handle: int, thread: int = 0) -> Op:
        """``hak_usable_size`` of the handle's block."""
        return cls(OpKind.USABLE_SIZE, thread, handle)

    @classmethod
    def usable_size_null(cls, thread: int = 0) -> Op:
        """``hak_usable_size(NULL)``: must be 0."""
        return cls(OpKind.USABLE_SIZE_NULL, thread)

    def kills_handle(self) -> bool:
        """True if the handle is dead after this op (free, realloc to 0)."""
        return self.kind is OpKind.FREE or (
            self.kind is OpKind.REALLOC and self.size == 0
        )


def _slot_setter(name: str) -> Callable[[Op, object], None]:
    setter: Callable[[Op, object], None] = getattr(Op, name).__set__
    return setter


_set_kind = _slot_setter("kind")
_set_thread = _slot_setter("thread")
_set_handle = _slot_setter("handle")
_set_size = _slot_setter("size")
_set_count = _slot_setter("count")
_set_align = _slot_setter("align")
_set_seed = _slot_setter("seed")


@dataclass(frozen=True, slots=True)
class ProgramConfig:
    """The allocator configuration; defaults and ranges are those of docs/options.md."""

    ss_cap: int = OPTION["ss_cap"].default
    budget_bytes: int = OPTION["budget_bytes"].default
    oom_policy: OomPolicy = OOM_POLICIES[OPTION["oom_policy"].default]
    cache_cap: int = OPTION["cache_cap"].default
    refill_batch: int = OPTION["refill_batch"].default
    release_empty: bool = bool(OPTION["release_empty"].default)
    ss_keep: int = OPTION["ss_keep"].default
    checked: bool = bool(OPTION["checked"].default)
    fail_map_at: int = OPTION["fail_map_at"].default

    def as_c_fields(self) -> dict[str, int]:
        """The values of ``hak_config_t``, in struct order, as ints."""
        fields: dict[str, int] = {}
        for option in OPTIONS:
            value = getattr(self, option.name)
            fields[option.name] = option.values.index(value) if option.values else int(value)
        return fields


CONFIG_FIELDS: tuple[str, ...] = tuple(option.name for option in OPTIONS)
"""ProgramConfig's fields in struct (and JSON) order."""

DEFAULT_CONFIG = ProgramConfig()


@dataclass(frozen=True, slots=True)
class ProgramTarget:
    """The allocator a program failed on, when it was not the built-in hakmem.

    ``spec`` is what ``--allocator`` was given (a name, or the library's
    path); ``real_path`` and ``sha256`` say which file that was, so a replay
    can tell when the library has changed since.
    """

    spec: str
    real_path: str
    sha256: str


TARGET_FIELDS = ("spec", "real_path", "sha256")
"""ProgramTarget's fields in JSON order."""


@dataclass(frozen=True, slots=True)
class Program:
    """A versioned program: config, thread count and ops over handles.

    ``churn``, when set, is a phase run after the ops: many short thread
    lifetimes on more threads than ``threads`` (see ``program.churn``).
    ``target`` is metadata, not input: the allocator a finding was met on.
    """

    format: str = FORMAT
    description: str = ""
    config: ProgramConfig = field(default=DEFAULT_CONFIG)
    threads: int = 1
    ops: tuple[Op, ...] = ()
    churn: ChurnSpec | None = None
    target_config: tuple[tuple[str, str], ...] = ()
    """Free-form ``(key, value)`` options a foreign target's ``hakfuzz_configure``
    gets after the config fields (``--configure KEY=VALUE``); a tuple of pairs,
    not a dict, so a Program stays hashable.  Empty for most programs."""
    target: ProgramTarget | None = None


def canonicalize(program: Program) -> Program:
    """Renumber handles 0, 1, 2, ... in creation order.

    The program should be valid (see ``validate``); the result is equal to
    ``program`` when it is already canonical.  Raises ProgramError for a
    handle that no earlier op created.
    """
    renumber: dict[int, int] = {}
    ops: list[Op] = []
    for index, op in enumerate(program.ops):
        if op.kind in CREATING_KINDS:
            renumber[op.handle] = len(renumber)
        if op.handle != NO_HANDLE:
            new = renumber.get(op.handle)
            if new is None:
                raise ProgramError(
                    f"{op.handle} was never created",
                    path="<program>", op_index=index,
                    op_kind=op.kind.json_name, field="handle",
                )
            if new != op.handle:
                op = Op(op.kind, op.thread, new, op.size, op.count, op.align, op.seed)
        ops.append(op)
    return Program(
        program.format, program.description, program.config, program.threads,
        tuple(ops), program.churn, program.target_config, program.target,
    )


def is_canonical(program: Program) -> bool:
    """True if the creating ops name handles 0, 1, 2, ... in order."""
    expected = 0
    for op in program.ops:
        if op.kind in CREATING_KINDS:
            if op.handle != expected:
                return False
            expected += 1
    return True
