# First, before numpy or JAX start a thread: malloc's settings for XLA on a CPU (see host.py).
from jaxseg import host  # noqa: F401
