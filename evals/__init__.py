"""Metrics, per-item statistics and reports."""
