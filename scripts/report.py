"""Rebuild the reports (leaderboard.md, results.csv, plots/) of one results folder, or merge several into one.

    python scripts/report.py results/default                       # rebuild in place
    python scripts/report.py results/a results/b --out results/ab  # one comparison of both
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evals.report import write_results
from unlearnbench.cache import read_json


def merge(folders: list[Path]) -> dict:
    """Concatenate the results of several folders; a (task, model) pair seen twice keeps the later folder's row,
    renamed with its experiment so neither is silently lost."""
    payloads = []
    for folder in folders:
        path = folder / "results.json"
        if not path.is_file():
            raise SystemExit(f"error: {folder} has no results.json; point at a folder written by run_benchmark.py")
        payloads.append(read_json(path))
    if len(payloads) == 1:
        return payloads[0]
    records, seen = [], set()
    for p in payloads:
        for r in p["results"]:
            r = dict(r)
            if (r["task"], r["model"]) in seen:
                r["model"] = f"{r['model']} ({p['experiment']})"
            seen.add((r["task"], r["model"]))
            records.append(r)
    return {"experiment": "+".join(p["experiment"] for p in payloads), "merged_from": [str(f) for f in folders],
            "configs": [p["config"] for p in payloads], "versions": payloads[-1]["versions"],
            "datasets": {k: v for p in payloads for k, v in p["datasets"].items()}, "results": records}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="results folders (each with results.json)")
    parser.add_argument("--out", type=Path, help="where to write; default: the single input folder")
    args = parser.parse_args(argv)
    if args.out is None and len(args.folders) > 1:
        parser.error("merging several folders needs --out")
    out = args.out or args.folders[0]
    payload = merge(args.folders)
    write_results(out, payload)
    print(f"reports written to {out}/ (leaderboard.md, results.csv, plots/)")


if __name__ == "__main__":
    main()
