"""The mutants table and its JSON document (``hakfuzz-mutants/1``)."""

from __future__ import annotations

from typing import Any

from hakfuzz.mutants.campaign import CampaignOptions, MutantResult

FORMAT = "hakfuzz-mutants/1"


def mutants_json(opts: CampaignOptions, results: list[MutantResult],
                 seconds: float) -> dict[str, Any]:
    """Everything ``hakfuzz mutants --json`` prints."""
    survived = [r.mutant.name for r in results if not r.killed and r.error is None]
    errors = [r.mutant.name for r in results if r.error is not None]
    return {
        "format": FORMAT,
        "budget_seconds": opts.seconds,
        "engines": list(opts.engines),
        "schedule": "replay once, then hypothesis and stress in turns of 5 s, 10 s, ... "
                    "up to max(5 s, budget/4)",
        "seconds": round(seconds, 2),
        "mutants": [r.as_json() for r in results],
        "killed": sum(1 for r in results if r.killed),
        "survived": survived,
        "errors": errors,
    }


def _size(row: dict[str, Any]) -> str:
    if row["finding_ops"] is None:
        return "-"
    found, small, by = row["finding_ops"], row["minimised_ops"], row["minimised_by"]
    if by is None or small is None:
        note = row.get("minimise_note") or "not minimised"
        return f"{found} ({note})"
    if by == "hypothesis":
        return f"{small} (shrunk by hypothesis)"
    rate = row.get("reproduction_rate")
    tail = f", reproduces {rate:.0%}" if isinstance(rate, float) else ""
    return f"{small} (ddmin from {found}{tail})"


def print_table(doc: dict[str, Any]) -> None:
    """The human-readable table, then the survivors."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"hakfuzz mutants (budget {doc['budget_seconds']:.0f} s per mutant)",
                  title_justify="left")
    for col in ("mutant", "verdict", "engine", "oracle", "time to kill", "finding (ops)"):
        table.add_column(col, overflow="fold", justify="right" if col == "time to kill" else "left")
    for row in doc["mutants"]:
        if row["error"]:
            verdict = "[yellow]error[/yellow]"
        else:
            verdict = "[green]killed[/green]" if row["killed"] else "[red]survived[/red]"
        ttk = "-" if row["time_to_kill"] is None else f"{row['time_to_kill']:.1f} s"
        oracle = row["oracle"] or (row["error"] or "")[:80] or "-"
        if row["kind"] in ("divergence", "oracle", "signal", "timeout"):
            oracle = f"{row['kind']}: {oracle}"
        table.add_row(row["mutant"], verdict, row["engine"] or "-", oracle, ttk, _size(row))
    out = Console()
    if not out.is_terminal:  # a pipe or a log file: do not fold the table to 80 columns
        out = Console(width=180)
    out.print(table)
    total = len(doc["mutants"])
    out.print(f"{doc['killed']} of {total} killed"
              + (f"; survived: {', '.join(doc['survived'])}" if doc["survived"] else "")
              + (f"; failed to build: {', '.join(doc['errors'])}" if doc["errors"] else ""))


__all__ = ["FORMAT", "mutants_json", "print_table"]
