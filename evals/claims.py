"""What a results table over seeds or worlds claims, checked against other results (scripts/readme_tables.py
--claims, and --check across CPU vendors): the claims that should hold on any machine, where exact cells cannot
(docs/numerics.md, docs/reproducing.md)."""
from __future__ import annotations

import re
from decimal import Decimal

CLAIMED = {"forget quality ↑": "forget_quality", "model utility ↑": "model_utility"}


def claims(experiment: str, shown: list[list[str]], records: list[dict]) -> list[str]:
    """What a table over seeds or worlds claims, checked against results from another machine, run or set of
    worlds: each mean it shows with an interval (forget quality, utility) inside the new interval (at the digits
    it is printed with); its best row still best or not significantly different. A table with no interval claims
    nothing checkable: a problem."""
    header, by_name, out, checked = shown[0], {r["model"]: r for r in records}, [], 0
    columns = {header.index(h): key for h, key in CLAIMED.items() if h in header}
    if not any(re.match(r"[-+.\de]+ \[", row[i]) for row in shown[1:] for i in columns):
        return [f"{experiment}: the table shows no intervals: its readings are one draw's, and no other run can "
                f"confirm or refute them (rerun it with seeds=<n> or worlds=<k>)"]
    for row in shown[1:]:
        r = by_name.get(row[0])
        for i, key in columns.items():
            match = re.match(r"([-+.\de]+) \[", row[i])
            if not match or r is None or key not in (r.get("spread") or {}):
                continue
            low, high = r["spread"][key]["ci95"]
            checked += 1
            shown_at = 0.5 * 10.0 ** int(Decimal(match[1]).as_tuple().exponent)      # the printed digits' rounding
            if not low - shown_at <= float(match[1]) <= high + shown_at:
                out.append(f"{experiment}: {row[0]}'s {key} {match[1]} lies outside the new 95 % interval "
                           f"[{low:.3g}, {high:.3g}]")
            if "(best)" in row[i] and not (r.get("best_mean") or r.get("tie_with_best")):
                out.append(f"{experiment}: the table's best row {row[0]} is significantly below the new best row")
    if not checked:
        out.append(f"{experiment}: the new results have no intervals to check the table's against (run it with the "
                   f"table's seeds or worlds)")
    return out
