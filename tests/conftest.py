import os

# Keras reference models run on the JAX backend: no TensorFlow needed to check the ports.
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
