"""Benchmarks: commands that measure CaseBridge on the real broker and database (not tests)."""
