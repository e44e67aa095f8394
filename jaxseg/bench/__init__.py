"""Benchmarks: ``python -m jaxseg.bench`` times the train and inference steps beside peer
libraries (`steps`, `peers`, `timing`); ``python -m jaxseg.bench.pipeline`` times the input
pipeline; ``python -m jaxseg.bench.profile`` traces a train step and ranks XLA's operations
(`profile`)."""

from jaxseg.bench.steps import main

__all__ = ["main"]
