"""Tests of the tdigest type and its aggregates in a live server (docs/extension.md)."""
