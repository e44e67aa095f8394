import os
import shutil
import tempfile

# Keras reference models run on the JAX backend: no TensorFlow needed to check the ports.
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Folders this process makes for the session, removed when it ends; xdist's workers inherit
# their paths and leave them alone.
_MADE_HERE = []


def _session_folder(variable: str, prefix: str) -> None:
  if variable not in os.environ:
    os.environ[variable] = tempfile.mkdtemp(prefix=prefix)
    _MADE_HERE.append(os.environ[variable])


def pytest_unconfigure(config):
  for folder in _MADE_HERE:
    shutil.rmtree(folder, ignore_errors=True)


# One XLA compilation cache for the whole session, subprocesses included: many tests build
# the same small models, and building one compiles a program per initialiser shape.
_session_folder("JAX_COMPILATION_CACHE_DIR", "jaxseg-xla-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Tests run tiny shapes, where compiling costs more than running: without LLVM's optimisation
# of XLA's generated loops the heaviest tests (a DenseNet121 port, the bench, an EfficientNetB2
# conversion) took 40% less time (convolutions and matrix products run in the same precompiled
# kernels either way). Set once: xdist's workers inherit it.
LOW_OPTIMISATION = "--xla_backend_optimization_level=0"
if LOW_OPTIMISATION not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {LOW_OPTIMISATION}".strip()
# Synthetic data and converted weights of the tests stay out of the user's cache.
_session_folder("JAXSEG_CACHE", "jaxseg-cache-")
