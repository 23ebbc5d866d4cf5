"""The naive baseline: one FastAPI route that runs the model directly, one request per forward pass.

Kept for the benchmarks, which show the gap to the batched service. Same model settings, same request and
response format, same validation; no batching, no queue.
"""
