"""Which campaign engines can aim at a target: the one home of that fact.

Our own allocator (``target`` None, or ``hakmem`` built in) runs every
engine.  A foreign target (any library given to ``--allocator``, glibc
included) runs the engines that need no model of its placement:

- ``parallel``: the foreign driver under the target's ``LD_PRELOAD``;
- ``preload``: real programs and driver workloads under the target,
  compared with a glibc run;
- ``hypothesis`` and ``atheris`` when their engines can judge a foreign
  target (``FOREIGN_CAPABLE`` in their modules): programs run in a serving
  child under the target's ``LD_PRELOAD``, checked by the allocator-neutral
  oracles instead of our model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hakfuzz.engines import ENGINES, hypothesis_engine

if TYPE_CHECKING:
    from hakfuzz.targets import Target

FOREIGN_ENGINES: tuple[str, ...] = ("parallel", "preload")
"""Engines that run a foreign target whatever the in-process engines can do."""

_IN_PROCESS = ("hypothesis", "atheris")


def in_process_foreign_capable() -> bool:
    """Whether the in-process engines can run a foreign target (their module says so)."""
    return getattr(hypothesis_engine, "FOREIGN_CAPABLE", False) is True


def engines_for(target: Target | None) -> tuple[str, ...]:
    """The engines that apply to ``target`` (None: the built-in hakmem), in ENGINES order."""
    if target is None:
        return ENGINES
    usable = set(FOREIGN_ENGINES)
    if in_process_foreign_capable():
        usable.update(_IN_PROCESS)
    return tuple(e for e in ENGINES if e in usable)


def skipped_for(target: Target | None, engines: tuple[str, ...]) -> dict[str, str]:
    """``{engine: why}`` for the engines of ``engines`` that do not apply to ``target``."""
    applies = engines_for(target)
    name = target.name if target is not None else "hakmem"
    return {
        e: f"skipped for {name}: this engine needs hakmem's model and cffi binding"
        for e in engines
        if e not in applies
    }


__all__ = ["FOREIGN_ENGINES", "engines_for", "in_process_foreign_capable", "skipped_for"]
