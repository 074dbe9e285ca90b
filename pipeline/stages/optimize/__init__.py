"""Compression stages: prune, cluster, quantize. Each is a plain function that returns a new model
(the input model is never mutated: tfmot mutates the layers it wraps) and proves its property."""
