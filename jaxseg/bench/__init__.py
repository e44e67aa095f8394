"""Benchmarks: ``python -m jaxseg.bench`` times the train and inference steps beside peer
libraries (`steps`, `peers`, `timing`); ``python -m jaxseg.bench.pipeline`` times the input
pipeline."""

from jaxseg.bench.steps import main

__all__ = ["main"]
