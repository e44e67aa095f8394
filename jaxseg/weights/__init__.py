"""Keras -> Flax weight conversion and converted weight files."""

from jaxseg.weights.keras import (
  WeightsMismatchError,
  keras_application,
  keras_features,
  keras_layer_weights,
  load_keras_weights,
  load_layer_weights,
)

__all__ = ["WeightsMismatchError", "keras_application", "keras_features", "keras_layer_weights",
           "load_keras_weights", "load_layer_weights"]
