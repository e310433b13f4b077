"""The mutants table and its JSON document (``hakfuzz-mutants/2``)."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from hakfuzz._console import console
from hakfuzz.mutants.kill import KillOptions, MutantResult

FORMAT = "hakfuzz-mutants/2"


def mutants_json(opts: KillOptions, results: list[MutantResult], seconds: float) -> dict[str, Any]:
    """Everything ``hakfuzz mutants --json`` prints."""
    kills = sorted(r.time_to_kill for r in results if r.time_to_kill is not None)
    return {
        "format": FORMAT,
        "budget_seconds": opts.seconds,
        "engines": list(opts.engines),
        "builds": list(opts.builds),
        "replay": opts.replay,
        "seconds": round(seconds, 2),
        "mutants": [r.as_json() for r in results],
        "killed": sum(1 for r in results if r.killed),
        "median_time_to_kill": round(kills[len(kills) // 2], 2) if kills else None,
        "survived": [r.mutant.name for r in results if not r.killed and r.error is None],
        "errors": [r.mutant.name for r in results if r.error is not None],
    }


def _size(row: dict[str, Any]) -> str:
    """Ops of the saved program, and its reproduction rate whenever one was measured.

    A 0 % rate must show even when minimisation kept every op: it says the
    saved program does not fail again as saved.
    """
    if row["finding_ops"] is None:
        return "-"
    rate = row["reproduction_rate"]
    reproduces = f"reproduces {rate:.0%}" if isinstance(rate, float) else ""
    if not row["minimised"] or row["minimised_ops"] == row["finding_ops"]:
        unminimised = "" if row["minimised"] or row["engine"] == "replay" else "not minimised"
        notes = ", ".join(n for n in (unminimised, reproduces) if n)
        return f"{row['finding_ops']}" + (f" ({notes})" if notes else "")
    tail = f", {reproduces}" if reproduces else ""
    return f"{row['minimised_ops']} (from {row['finding_ops']}{tail})"


def print_table(doc: dict[str, Any]) -> None:
    """The human-readable table, then the survivors."""
    replay = "with corpus replay" if doc["replay"] else "engines alone, no corpus"
    table = Table(
        title=f"hakfuzz mutants (budget {doc['budget_seconds']:.0f} s per mutant, {replay})",
        title_justify="left",
    )
    for col in ("mutant", "verdict", "engine", "build", "time to kill", "finding (ops)", "what"):
        table.add_column(col, justify="right" if col == "time to kill" else "left")
    for row in doc["mutants"]:
        if row["error"]:
            verdict, what = "[yellow]error[/yellow]", escape(row["error"][:200])
        else:
            verdict = "[green]killed[/green]" if row["killed"] else "[red]survived[/red]"
            what = escape(row["signature"] or "; ".join(row["notes"]) or "-")
        ttk = "-" if row["time_to_kill"] is None else f"{row['time_to_kill']:.1f} s"
        table.add_row(
            row["mutant"], verdict, row["engine"] or "-", row["build"] or "-", ttk, _size(row), what
        )
    out = console()
    out.print(table)
    total = len(doc["mutants"])
    median = doc["median_time_to_kill"]
    out.print(
        f"{doc['killed']} of {total} killed"
        + (f", median time to kill {median:.1f} s" if median is not None else "")
        + (f"; survived: {', '.join(doc['survived'])}" if doc["survived"] else "")
        + (f"; failed to build: {', '.join(doc['errors'])}" if doc["errors"] else "")
    )


__all__ = ["FORMAT", "mutants_json", "print_table"]
