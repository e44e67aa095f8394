import os
import tempfile

# Keras reference models run on the JAX backend: no TensorFlow needed to check the ports.
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One XLA compilation cache for the whole session, subprocesses included: many tests build
# the same small models, and building one compiles a program per initialiser shape.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="jaxseg-xla-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Tests run tiny shapes, where compiling costs more than running: without LLVM's optimisation
# of XLA's generated loops the heaviest tests (a DenseNet121 port, the bench, an EfficientNetB2
# conversion) took 40% less time (convolutions and matrix products run in the same precompiled
# kernels either way). Set once: xdist's workers inherit it.
LOW_OPTIMISATION = "--xla_backend_optimization_level=0"
if LOW_OPTIMISATION not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {LOW_OPTIMISATION}".strip()
# Synthetic data and converted weights of the tests stay out of the user's cache.
os.environ.setdefault("JAXSEG_CACHE", tempfile.mkdtemp(prefix="jaxseg-cache-"))
