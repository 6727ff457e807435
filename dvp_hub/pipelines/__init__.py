"""Pipelines (one per file)."""
