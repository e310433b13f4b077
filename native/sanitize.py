"""Run a command with a sanitizer runtime preloaded, so sanitized builds can load.

A module built with ``-fsanitize=address`` (or ``thread``) can only be loaded
by a process whose *first* library is the sanitizer runtime; Python is not
built that way, so the runtime has to come through ``LD_PRELOAD``.  This must
be set when the process starts, not afterwards.

    python -m hakfuzz.native.sanitize asan -- pytest -n 2 -m "native and not slow"

builds the variant (in this unsanitized process), then replaces itself with
the command, its environment extended by
:func:`hakfuzz.native.sanitizer_env` and ``HAKFUZZ_VARIANT=<variant>``.
The variables themselves come from :func:`hakfuzz.native.sanitizer_env`.
"""

from __future__ import annotations

import argparse
import os
import sys

from hakfuzz._errors import HakfuzzError
from hakfuzz.native._build import build
from hakfuzz.native._toolchain import sanitizer_env


def main(argv: list[str] | None = None) -> int:
    """Build the variant, then exec the command under its sanitizer environment."""
    parser = argparse.ArgumentParser(
        prog="python -m hakfuzz.native.sanitize",
        description="Run COMMAND with the sanitizer runtime of VARIANT preloaded.",
    )
    parser.add_argument("variant", help="asan or tsan (any variant is accepted)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    try:

        build(args.variant, progress=lambda line: print(line, file=sys.stderr, flush=True))
        env = {**os.environ, **sanitizer_env(args.variant), "HAKFUZZ_VARIANT": args.variant}
    except HakfuzzError as exc:
        print(f"hakfuzz.native.sanitize: error: {exc}", file=sys.stderr)
        return exc.exit_code
    sys.stdout.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"hakfuzz.native.sanitize: error: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
