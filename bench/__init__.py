"""Benchmark harness (imported as ``vecface.bench``)."""
