"""The serving layer: one unit per model (engine, batcher, workers, lifecycle), the registry
of units, and the compute gate they share."""
