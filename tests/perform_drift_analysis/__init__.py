"""Integration tests of perform_drift_analysis and capture_baseline (docs/analysis.md)."""
