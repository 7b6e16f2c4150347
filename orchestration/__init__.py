"""Orchestration: the layer that ties tasks (benchmarks/), methods and evaluations (evals/) together through the
pipeline's cached units (pipeline.py, built with the unit mechanics of units.py), checked first by preflight.py.
One task's benchmark (benchmark.py) builds rows from row sources and adds columns from column sources
(populations.py, attacks/, probing.py); one record builder (rows.py) writes them for it and for the requests protocol
(requests.py). tuning.py is the tuning protocol, guarantees.py the SISA and DP rows, extensions.py loads a user's
methods, tasks and attacks, export.py writes models out. The entry points (run_benchmark.py, tune.py) call
these. Map: docs/layout.md."""
