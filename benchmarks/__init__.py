"""Benchmarks: the naive baseline vs the batched service, side by side on one machine."""
