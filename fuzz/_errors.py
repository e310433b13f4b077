"""Errors meant for the user, not for a traceback.

The CLI prints a :class:`HakfuzzError` as one line on stderr and exits with its
``exit_code``; anything else that escapes is a bug and keeps its traceback.
Subclass :class:`HakfuzzError` for a user-facing failure (a malformed program
file, a compiler error, a missing tool) and name the culprit in the message.
"""


class HakfuzzError(Exception):
    """A failure explained by its message; the CLI exits with ``exit_code``."""

    exit_code: int = 1


class UsageError(HakfuzzError):
    """The command line was wrong (unknown option, bad value): exit status 2."""

    exit_code = 2
