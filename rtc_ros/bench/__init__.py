"""Benchmarks: delay robustness on dynamic tasks (delay), chunk latency (latency)."""
