"""Keep the result tables of the README and docs/ equal to what the current code produces.

    python scripts/readme_tables.py --check   # every marked table vs results/<experiment>/results.json; exit 1 if stale
    python scripts/readme_tables.py --write   # rewrite the marked tables from those results
    python scripts/readme_tables.py --print smollm2_tofu   # one experiment's table, for results CI does not rerun
    python scripts/readme_tables.py --claims  # on another machine: do the tables' claims over seeds / worlds hold?
    python scripts/readme_tables.py --check --only default wmdp   # only these experiments' tables (what CI reran)

A table sits between `<!-- table:<experiment> cpu=<vendor> -->` and `<!-- /table -->` (`cpu=`, written by --write:
the CPU vendor the table was computed on). Metric, token and FLOP cells must match at the printed digits; wall-time,
relative-cost and memory cells depend on the machine's load and are rendered but not compared. The reproducible
numerics hold within a vendor, not across vendors: with results of another vendor, --check checks what a table
claims instead of its cells (evals/claims.py: every mean shown with an interval within the new interval, the best
row still best or tied; a table without intervals fails), and lists other kinds of tables as not compared;
`--claims` does that for every table. Each results.json checked records how (`checks`).
A tuning sweep (tune.py) sits between `<!-- tuning:<experiment> -->` and `<!-- /tuning -->`, from
results/<experiment>/tuning.json; every cell but its wall time is compared. The recovery attacks of an
experiment (orchestration/attacks/) sit between `<!-- robustness:<experiment> -->` and `<!-- /robustness -->`,
its requests over time (orchestration/requests.py) between `<!-- requests:<experiment> -->` and `<!-- /requests -->`
(every cell but the last column's wall-time based cost; checked by `bash scripts/reproduce.sh`, not CI), and its
rows with a guarantee (orchestration/guarantees.py) between `<!-- guarantees:<experiment> -->` and
`<!-- /guarantees -->` (every cell but the wall-time based ones), its membership and memorization columns
(evals/privacy.py) between `<!-- privacy:<experiment> -->` and `<!-- /privacy -->`, its probes (evals/probes.py)
between `<!-- probes:<experiment> -->` and `<!-- /probes -->`, and their discrimination tests between
`<!-- probe-tests:<experiment> -->` and `<!-- /probe-tests -->`, and a run of several tasks' table across them
between `<!-- across:<experiment> -->` and `<!-- /across -->` (every cell but the relative costs).
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from evals.claims import claims  # noqa: E402
from evals.records import succeeded  # noqa: E402

MARK = re.compile(r"<!-- (?P<kind>table|tuning|robustness|requests|guarantees|privacy|probes|probe-tests|across):"
                  r"(?P<exp>[\w.-]+)(?: cpu=(?P<cpu>\w+))? -->\n"
                  r"(?P<body>.*?)"
                  r"<!-- /(?P=kind) -->", re.S)


def sci(v): return "—" if v is None else f"{v:.2e}"
def f3(v): return "—" if v is None else f"{v:.3f}"
def f1(v): return "—" if v is None else f"{v:.1f}"
def thousands(v): return "—" if v is None else f"{v:,}"
def ratio(v, ref): return "—" if v is None or not ref else f"{v / ref:.2f}"
def times(v, ref):
    """A ratio that spans decades: whole numbers from 10 up, two significant digits below (0.21, not 0)."""
    return "—" if v is None or not ref else f"{v / ref:.0f}" if v / ref >= 10 else f"{v / ref:.2g}"
def mib(v): return "—" if v is None else f"{v / 2**20:.0f}"
def interval(r, key, fmt):
    """A row's 95 % interval over seeds, where it has one (evals/spread.py)."""
    s = (r.get("spread") or {}).get(key)
    return f" [{fmt(s['ci95'][0])}, {fmt(s['ci95'][1])}]" if s else ""
def mark(r):
    """The forget score's significance mark over seeds (best row, or not significantly different from it), or †:
    utility below the floor, so never best."""
    return (" †" if r.get("below_utility_floor") else " (best)" if r.get("best_mean") else
            " ≈" if r.get("tie_with_best") else "")


# (header, cell(record, target record), compared?)
TOFU = [("row", lambda r, t: r["model"], True),
        ("settings", lambda r, t: r.get("settings", ""), True),
        ("forget quality ↑", lambda r, t: sci(r["metrics"]["forget_quality"])
         + interval(r, "forget_quality", sci) + mark(r), True),
        ("× target", lambda r, t: times(r["metrics"]["forget_quality"], t["metrics"]["forget_quality"]), True),
        ("model utility ↑", lambda r, t: f3(r["metrics"]["model_utility"]) + interval(r, "model_utility", f3), True),
        ("÷ target", lambda r, t: ratio(r["metrics"]["model_utility"], t["metrics"]["model_utility"]), True),
        ("forget Prob", lambda r, t: f3(r["metrics"]["forget_prob"]), True),
        ("forget truth ratio", lambda r, t: f3(r["metrics"]["forget_truth_ratio"]), True),
        ("tokens", lambda r, t: thousands(r["cost"]["tokens"]), True),
        ("FLOPs", lambda r, t: sci(r["cost"]["flops"]), True),
        ("wall s", lambda r, t: f1(r["cost"]["wall_seconds"]), False),
        ("relative cost", lambda r, t: f3(r["cost"]["relative_cost"]), False),
        ("peak RSS MiB", lambda r, t: mib(r["cost"]["peak_memory_bytes"]), False),
        ("eval wall s", lambda r, t: f1((r.get("eval_cost") or {}).get("wall_seconds")), False)]
COST = [("tokens", lambda r, t: thousands(r["cost"]["tokens"]), True),      # the WMDP and MUSE tables' last columns
        ("wall s", lambda r, t: f1(r["cost"]["wall_seconds"]), False),
        ("relative cost", lambda r, t: f3(r["cost"]["relative_cost"]), False),
        ("peak RSS MiB", lambda r, t: mib(r["cost"]["peak_memory_bytes"]), False)]
WMDP = [("row", lambda r, t: r["model"], True),
        ("forget acc ↓", lambda r, t: f3(r["metrics"]["forget_acc"]), True),
        ("neighbour acc ↑", lambda r, t: f3(r["metrics"]["neighbour_acc"]), True),
        ("general acc ↑", lambda r, t: f3(r["metrics"]["general_acc"]), True),
        ("utility ↑", lambda r, t: f3(r["metrics"]["model_utility"]), True),
        ("gap to retain ↓", lambda r, t: f3(r["metrics"].get("forget_gap_to_retain")), True)] + COST
MUSE = [("row", lambda r, t: r["model"], True),
        ("VerbMem forget ↓", lambda r, t: f1(r["metrics"]["verbmem_forget"]), True),
        ("KnowMem forget ↓", lambda r, t: f1(r["metrics"]["knowmem_forget"]), True),
        ("KnowMem retain ↑", lambda r, t: f1(r["metrics"]["knowmem_retain"]), True),
        ("PrivLeak (0 ideal)", lambda r, t: f1(r["metrics"].get("priv_leak")), True),
        ("Min-40% AUC", lambda r, t: f3(r["metrics"]["auc_min_k"]), True)] + COST
FAMILIES = {"tofu": TOFU, "wmdp": WMDP, "muse": MUSE}
MEASURES = {"tofu": "forget_prob", "wmdp": "forget_acc", "muse": "verbmem_forget"}     # the recovery attacks'


def led(r, t):
    """In how many worlds a row leads (a table over worlds: evals/worlds.py); references lead nowhere."""
    return f"{r['leads_in']} of {len(r['per_world'])}" if "leads_in" in r else ""


def render(results: dict) -> list[list[tuple[str, bool]]]:
    """Rows of (cell text, compared?) cells; the first row is the header. A table over worlds gains a column: the
    worlds each row leads."""
    records = results["results"]
    spec = FAMILIES[next(iter(results["datasets"].values())).get("family", "tofu")]
    if results.get("worlds"):
        spec = spec[:3] + [("worlds led", led, True)] + spec[3:]
    target = next(r for r in records if r["model"] == "target")
    rows = [[(h, True) for h, _, _ in spec]]
    for r in records:
        if r["status"] != "ok":
            rows.append([(r["model"], True), (f"{r['status']}: {r.get('error', '')}", True)] +
                        [("", True)] * (len(spec) - 2))
            continue
        rows.append([(cell(r, target), compared) for _, cell, compared in spec])
    return rows


def render_robustness(results: dict) -> list[list[tuple[str, bool]]]:
    """Each row's recovery attacks: relearning (forget measure after it, recovery, TOFU's forget quality against
    the relearned retain model, OpenUnlearning's score) and quantization (recovery per bit width, 4-bit utility)."""
    meta = next(iter(results["datasets"].values()))
    m = MEASURES[meta.get("family", "tofu")]
    bits = [b for b in (8, 4) if any(f"quant{b}_recovery" in r["metrics"] for r in results["results"])]
    spec: list[tuple[str, Callable, bool]] = [("row", lambda r: r["model"], True),
            ("recovery without attack", lambda r: f3(r["metrics"].get("unattacked_recovery")), True),
            (f"relearned {m.replace('_', ' ')}", lambda r: f3(r["metrics"].get(f"relearn_{m}")), True),
            ("relearn recovery ↓", lambda r: f3(r["metrics"].get("relearn_recovery")) + over_worlds(r), True)]
    if m == "forget_prob":
        spec.append(("relearned forget quality ↑", lambda r: sci(r["metrics"].get("relearn_forget_quality")), True))
    spec.append(("OU relearn score ↑", lambda r: f3(r["metrics"].get("relearn_ou_score")), True))
    spec += [(f"{b}-bit recovery ↓", lambda r, b=b: f3(r["metrics"].get(f"quant{b}_recovery")), True) for b in bits]
    spec += [(f"{bits[-1]}-bit utility ↑", lambda r: f3(r["metrics"].get(f"quant{bits[-1]}_model_utility")), True)] \
        if bits else []
    spec.append(("attacks wall s", lambda r: f1(sum(c["attack"]["wall_seconds"] + c["eval"]["wall_seconds"]
                                                    for c in (r.get("attack_cost") or {}).values()) or None), False))
    rows = [[(h, True) for h, _, _ in spec]]
    attacked = [r for r in succeeded(results["results"]) if "unattacked_recovery" in r["metrics"]]
    return rows + [[(cell(r), compared) for _, cell, compared in spec] for r in attacked]


def over_worlds(r):
    """A row's relearn-recovery interval over worlds, where the results are a table over worlds (evals/worlds.py)."""
    return interval(r, "relearn_recovery", f3) if r.get("per_world") else ""


def render_probes(results: dict) -> list[list[tuple[str, bool]]]:
    """Each row under the probes (evals/probes.py): the plain forget score beside the worst case over the plain
    question and the probes that discriminate (with intervals over seeds), the probe that attains it (with how
    many seeds it attains it on, where several were probed), and every probe's recovery, the plain one first."""
    meta = next(iter(results["datasets"].values()))
    tofu = meta.get("family", "tofu") == "tofu"
    m = MEASURES[meta.get("family", "tofu")]
    scored = lambda key, fmt: lambda r: (fmt(r["metrics"].get(key)) + interval(r, key, fmt) +
                                         (mark(r) if key == meta["forget_score"] else ""))
    spec: list[tuple[str, Callable, bool]] = [("row", lambda r: r["model"], True)]
    if tofu:
        spec += [("forget quality ↑", scored("forget_quality", sci), True),
                 ("worst-case forget quality ↑", scored("worst_forget_quality", sci), True)]
    spec += [(m.replace("_", " ") + " ↓", scored(m, f3), True),
             ("worst-case recovery ↓", scored("worst_recovery", f3), True),
             ("attained by", worst_probe, True),
             ("plain recovery", lambda r: f3(r["metrics"].get("probe_plain_recovery")), True)]
    spec += [(f"{p} recovery", lambda r, p=p: f3(r["metrics"].get(f"probe_{p}_recovery")), True)
             for p in meta["probes"]["asked"]]
    rows = [[(h, True) for h, _, _ in spec]]
    return rows + [[(cell(r), compared) for _, cell, compared in spec] for r in succeeded(results["results"])]


def worst_probe(record: dict) -> str:
    """The probe that attains a row's worst case: its first seed's, and on how many seeds each did where several
    were probed."""
    worst = record.get("worst_probe")
    if not worst:
        return "—"
    if sum(worst["counts"].values()) == 1:
        return worst["first"]
    return ", ".join(f"{p} ({n})" for p, n in sorted(worst["counts"].items(), key=lambda kv: (-kv[1], kv[0])))


def render_probe_tests(results: dict) -> list[list[tuple[str, bool]]]:
    """The discrimination test of every probe on the run's target and retain model, with what the probe changes."""
    probes = next(iter(results["datasets"].values()))["probes"]
    changes = {"plain": "(the task's own question)", **probes.get("changes", {})}
    rows = [[(h, True) for h in ("probe", "changes", "target", "retain", "gap", "p-value", "discriminates")]]
    return rows + [[(p, True), (changes.get(p, "—"), True), (f3(t["target"]), True), (f3(t["retain"]), True),
                    (f3(t["gap"]), True), (f"{t['p_value']:.2g}", True), ("yes" if t["discriminates"] else "no", True)]
                   for p, t in probes["tests"].items()]


def render_requests(results: dict) -> list[list[tuple[str, bool]]]:
    """Every task's requests tables (evals/report.py's, one per mode) as cells; the last column, a wall-time ratio,
    is not compared. Each mode's header row comes first, as a row of cells."""
    from evals.report import requests_tables, task_meta
    rows = []
    for task in dict.fromkeys(r["task"] for r in results["results"] if "request" in r):
        lines = requests_tables(results["results"], task, task_meta(results["datasets"], task))
        rows += [[(c, i < len(row) - 1) for i, c in enumerate(row)] for row in parse("\n".join(lines))]
    return rows


def render_guarantees(results: dict) -> list[list[tuple[str, bool]]]:
    """Every task's table of rows with a guarantee (evals/report.py's) as cells; wall-time based cells are not
    compared."""
    from evals.report import GUARANTEE_COLUMNS, GUARANTEE_TIMED, guarantees_table
    timed = {i for i, c in enumerate(GUARANTEE_COLUMNS) if c in GUARANTEE_TIMED}
    rows: list[list[tuple[str, bool]]] = []
    for task in dict.fromkeys(r["task"] for r in results["results"]):
        lines = guarantees_table(results["results"], task)
        table = parse("\n".join(lines[4:]))
        rows += [[(c, i not in timed) for i, c in enumerate(row)] for row in table[1 if rows else 0:]]
    return rows


def render_privacy(results: dict) -> list[list[tuple[str, bool]]]:
    """Every task's membership and memorization table (evals/report.py's privacy section) as cells."""
    from evals.report import privacy_table
    rows: list[list[tuple[str, bool]]] = []
    for task in dict.fromkeys(r["task"] for r in results["results"]):
        table = parse("\n".join(privacy_table(results["results"], task)[4:]))
        rows += [[(c, True) for c in row] for row in table[1 if rows else 0:]]
    return rows


def render_across(results: dict) -> list[list[tuple[str, bool]]]:
    """The table across tasks (evals/report.py's) as cells; relative costs, wall-time ratios, are not compared."""
    from evals.report import cross_task_table
    tasks = list(dict.fromkeys(r["task"] for r in results["results"]))
    rows = parse("\n".join(cross_task_table(results["results"], results["datasets"], tasks)[2:]))
    timed = {i for i, c in enumerate(rows[0]) if c.endswith("relative_cost")}
    return [[(c, i not in timed) for i, c in enumerate(row)] for row in rows]


def render_tuning(result: dict) -> list[list[tuple[str, bool]]]:
    """The sweep's table (orchestration/tuning.py) as cells; its last column, wall seconds, is not compared."""
    from orchestration.tuning import table
    rows = parse(table(result).split("\n", 2)[2])
    return [[(c, i < len(row) - 1) for i, c in enumerate(row)] for row in rows]


def to_markdown(rows) -> str:
    lines = ["| " + " | ".join(c for c, _ in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(c for c, _ in row) + " |" for row in rows[1:]]) + "\n"


def requests_markdown(rows) -> str:
    """Requests tables: a new table at each header row (its first cell is the mode)."""
    tables: list[list] = []
    current: list = []
    for row in rows:
        if row[0][0] in ("sequential", "cumulative") and current:
            tables.append(current)
            current = []
        current.append(row)
    return "\n".join(to_markdown(t) for t in tables + [current])


def parse(body: str) -> list[list[str]]:
    lines = [line for line in body.strip().splitlines() if line.startswith("|") and not line.startswith("|---")]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]


def main(argv=None) -> int:
    import json
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--print", metavar="EXPERIMENT", help="print results/<EXPERIMENT>'s table")
    mode.add_argument("--claims", action="store_true", help="the README's means and best row vs new intervals")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="folder of results/<experiment>/")
    parser.add_argument("--readme", type=Path, nargs="+", default=pages(),
                        help="the pages holding tables (default: README.md and docs/*.md)")
    parser.add_argument("--only", nargs="+", metavar="EXPERIMENT",
                        help="--check/--claims only these experiments' tables (e.g. the ones just rerun)")
    args = parser.parse_args(argv)
    if args.only and (args.write or args.print):
        parser.error("--only goes with --check or --claims")
    if args.print:
        print(to_markdown(render(json.loads((args.results / args.print / "results.json").read_text("utf-8")))))
        return 0
    texts = {page: page.read_text(encoding="utf-8") for page in args.readme}
    unknown = set(args.only or ()) - {m["exp"] for text in texts.values() for m in MARK.finditer(text)}
    if unknown:
        parser.error(f"--only {' '.join(sorted(unknown))}: no such table in {', '.join(map(str, args.readme))}")
    problems: list[str] = []
    skipped: list[str] = []
    ran: dict[str, list[dict]] = {}
    checked = 0
    for page, text in texts.items():
        out, last, where = [], 0, page.relative_to(ROOT) if page.is_relative_to(ROOT) else page
        for m in MARK.finditer(text):
            if args.only and m["exp"] not in args.only and not args.write:
                continue
            checked += 1
            tuning = m["kind"] == "tuning"
            path = args.results / m["exp"] / ("tuning.json" if tuning else "results.json")
            if not path.is_file():
                problems.append(f"{where}: {m['exp']}: no {path}; run `python "
                                f"{'tune' if tuning else 'run_benchmark'}.py experiment={m['exp']}` first")
                continue
            kind = {"tuning": render_tuning, "robustness": render_robustness, "table": render,
                    "requests": render_requests, "guarantees": render_guarantees, "privacy": render_privacy,
                    "probes": render_probes, "probe-tests": render_probe_tests, "across": render_across}[m["kind"]]
            data = json.loads(path.read_text(encoding="utf-8"))
            vendor = cpu_vendor(data)
            other = bool(m["cpu"] and vendor and m["cpu"] != vendor)    # a table of another vendor's results
            exact = args.write or not (args.claims or other)           # else its claims, not its cells
            rows = kind(data) if exact else None
            if args.write and other:
                skipped.append(f"{where}: {m['kind']}:{m['exp']} (computed on {m['cpu']}, these results on {vendor})")
                continue
            if args.write:
                body = requests_markdown(rows) if m["kind"] == "requests" else to_markdown(rows)
                where_cpu = f" cpu={vendor}" if vendor else (f" cpu={m['cpu']}" if m["cpu"] else "")
                out += [text[last:m.start()], f"<!-- {m['kind']}:{m['exp']}{where_cpu} -->\n", body]
                last = m.end("body")
                continue
            shown, label, before = parse(m["body"]), f"{where}: {m['kind']}", len(problems)
            if args.claims or other:
                # across vendors the reproducible mode promises no equal cells (docs/numerics.md), but what a table
                # claims over seeds or worlds must still hold
                if m["kind"] == "table":
                    problems += claims(m["exp"], shown, data["results"])
                    ran.setdefault(m["exp"], []).append({"table": label, "as": "claims",
                                                         "holds": len(problems) == before})
                elif other:
                    skipped.append(f"{where}: {m['kind']}:{m['exp']} (computed on {m['cpu']}, these results on "
                                   f"{vendor}; only a table over seeds or worlds has claims to check)")
                continue
            assert rows is not None         # the cells, computed above wherever they are compared
            if len(shown) != len(rows):
                problems.append(f"{where}: {m['exp']}: the page has {len(shown) - 1} rows, the results {len(rows) - 1}")
            for want, have in zip(rows, shown) if len(shown) == len(rows) else ():
                for (cell, compared), seen in zip(want, have):
                    if compared and cell != seen:
                        problems.append(f"{where}: {m['exp']}: row {want[0][0]!r}: the page says {seen!r}, the "
                                        f"results {cell!r}")
            ran.setdefault(m["exp"], []).append({"table": label, "as": "exact", "holds": len(problems) == before})
        if args.write and out:
            page.write_text("".join(out) + text[last:], encoding="utf-8")
            print(f"rewrote the marked tables of {where}")
    if skipped:
        print(f"Not {'written' if args.write else 'compared'}, computed on another CPU vendor (run --claims, or rerun "
              f"on that vendor):\n- " + "\n- ".join(skipped))
    if args.write:
        return 0
    for exp, tables in ran.items():        # which tables each run's results were checked against, and how
        record_checks(args.results / exp / "results.json", tables)
    if problems:
        print("Tables differ from the results:\n- " + "\n- ".join(problems))
        return 1
    exact = sum(t["as"] == "exact" for tables in ran.values() for t in tables)
    print(f"Tables match {args.results}: {exact} cell for cell, {checked - len(skipped) - exact} as claims (another "
          f"CPU vendor, or --claims)")
    return 0


def record_checks(path: Path, tables: list[dict]) -> None:
    """results.json's `checks`: each page table its results were compared with, exactly (same CPU vendor) or as
    claims (another vendor, or --claims), and whether it held."""
    import json

    from unlearnbench.cache import write_json
    data = json.loads(path.read_text(encoding="utf-8"))
    data["checks"] = tables
    write_json(path, data)


def cpu_vendor(results: dict) -> str:
    """The CPU vendor a results file was computed on (runtime.numerics.cpu; "" for older files)."""
    return ((results.get("runtime") or {}).get("numerics") or {}).get("cpu", {}).get("vendor", "")


def pages() -> list[Path]:
    """README.md and every page of docs/: where the tables are."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

if __name__ == "__main__":
    sys.exit(main())
