"""Benchmarks of speechbrain-cavmae (not part of the test suite)."""
