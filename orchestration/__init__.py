"""Orchestration: runs that drive the pipeline's cached units (pipeline.py) for a purpose: one task's benchmark
(benchmark.py) and the tuning protocol (tuning.py). Entry points (run_benchmark.py, tune.py) call these."""
