"""Metrics, per-item statistics and reports: pure functions of per-item statistics (docs/metrics.md), the
evaluation engine (docs/engine.md), the lm-eval bridge, spread over seeds, result files and plots."""
