"""The ``hakfuzz`` command line.

Each command is a module with two functions::

    def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser
    def run(args: argparse.Namespace) -> int

registered by one line in :data:`COMMANDS`.  Keep a command module's top-level
imports light (import heavy things inside ``run``): ``hakfuzz --help`` imports
every command module.

Errors: a :class:`~hakfuzz._errors.HakfuzzError` (``UsageError`` for bad
usage) becomes one line on stderr and its exit status (2 for usage); argparse
errors are usage errors too.  Any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import TYPE_CHECKING, NoReturn, Protocol, TypeAlias, cast

from hakfuzz import __version__
from hakfuzz._errors import HakfuzzError, UsageError

COMMANDS: list[tuple[str, str]] = [
    ("build", "hakfuzz.cli.build"),
    ("info", "hakfuzz.cli.info"),
    ("stress", "hakfuzz.cli.stress"),
    ("replay", "hakfuzz.cli.replay"),
    ("larson", "hakfuzz.cli.larson"),
    ("preload", "hakfuzz.cli.preload"),
    ("bench", "hakfuzz.cli.bench"),
    ("fuzz", "hakfuzz.cli.fuzz"),
    ("minimize", "hakfuzz.cli.minimize"),
    ("promote", "hakfuzz.cli.promote"),
    ("mutants", "hakfuzz.cli.mutants"),
    ("coverage", "hakfuzz.cli.coverage"),
    ("status", "hakfuzz.cli.status"),
    ("findings", "hakfuzz.cli.findings"),
]
"""(command name, module) pairs, in the order ``--help`` lists them."""


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors raise :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        """Report bad usage as a :class:`UsageError` naming this (sub)command."""
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[ArgumentParser]
    """What a command's ``add_parser`` receives."""


class Command(Protocol):
    """What a command module provides."""

    def add_parser(self, subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
        """Add the command's parser (with help and arguments) to ``subparsers``."""
        ...

    def run(self, args: argparse.Namespace) -> int:
        """Carry out the command; return the exit status."""
        ...


def build_parser() -> ArgumentParser:
    """The full parser, with every registered command."""
    parser = ArgumentParser(
        prog="hakfuzz",
        description="Differential fuzzing and parallel stress testing of the hakmem allocator.",
    )
    parser.add_argument("--version", action="version", version=f"hakfuzz {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS:
        command = cast(Command, importlib.import_module(module_name))
        sub = command.add_parser(subparsers, name)
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hakfuzz`` console script; returns the exit status."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("hakfuzz: missing command (see hakfuzz --help)")
        status: int = args._run(args)
        return status
    except HakfuzzError as exc:
        message = " ".join(str(exc).split()) if isinstance(exc, UsageError) else str(exc)
        prefix = "" if message.startswith("hakfuzz") else "hakfuzz: error: "
        print(f"{prefix}{message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hakfuzz: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `hakfuzz info | head`
        sys.stderr.close()
        return 1


if __name__ == "__main__":
    sys.exit(main())
