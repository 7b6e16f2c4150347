"""The records of results.json, one per row and task (orchestration/rows.py builds them): what reads them (the
report, the plots, the table over worlds, scripts/readme_tables.py) selects them here."""
from __future__ import annotations


def succeeded(records: list[dict], task: str | None = None) -> list[dict]:
    """The records that have metrics (status ok), of `task` if given, in order."""
    return [r for r in records if r["status"] == "ok" and (task is None or r["task"] == task)]
