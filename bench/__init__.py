"""Benchmarks that print figures (throughput, peak memory, bytes moved); never asserted in tests."""
