"""Load generation and benchmarks for batchserve."""
