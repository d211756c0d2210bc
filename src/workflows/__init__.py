"""Workflows: deterministic orchestration only; every I/O happens in an activity."""
