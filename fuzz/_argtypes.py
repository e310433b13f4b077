"""Argparse ``type=`` converters for numbers that must make sense.

``--timeout 0`` or ``--minimize-time -1`` is never what the user meant: left
to run, a zero timeout turns every run into a "timed out" finding, and a
negative budget is silently skipped work.  These converters reject such a
value while the command line is parsed, so the user gets one line naming the
option (``argument --timeout: must be > 0, got '0'``) and exit status 2
before any work starts.  Infinity and NaN are rejected too: a time budget of
``inf`` overflows where it is turned into milliseconds.
"""

from __future__ import annotations

import argparse
import math

from hakfuzz._errors import UsageError


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def positive_float(text: str) -> float:
    """A finite number > 0 (a timeout, a duration in seconds)."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a budget where 0 means "none")."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (a count of runs, ops, workers)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (a count where 0 means "none")."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


__all__ = ["non_negative_float", "non_negative_int", "positive_float", "positive_int"]


def parse_names(text: str, known: tuple[str, ...], what: str, prog: str) -> tuple[str, ...]:
    """A comma list of names from ``known`` (``all`` for every one), without repeats.

    An unknown name, or none at all, is a usage error naming ``prog`` and the choices.
    """
    if text == "all":
        return known
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    for name in names:
        if name not in known:
            raise UsageError(f"{prog}: unknown {what} {name!r} (choose from {', '.join(known)})")
    if not names:
        raise UsageError(f"{prog}: no {what} given")
    return names
