"""Copy Keras application weights into the Flax ports, layer by layer, by Keras layer name.

A Keras model is first read into a plain mapping ``{layer name: {weight name: array}}``
(`keras_layer_weights`); the same mapping is what a converted weights file stores, so a
live Keras model and a ``.npz`` file go through one loader (`load_layer_weights`).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxseg.models import layers
from jaxseg.models.backbones import encoder_class

LayerWeights = Mapping[str, Mapping[str, np.ndarray]]


class WeightsMismatchError(ValueError):
  """The Keras weights do not fit the port; the message names the first layer that differs."""


def keras_layer_weights(keras_model) -> dict[str, dict[str, np.ndarray]]:
  """Every weighted layer of a Keras model as ``{layer: {weight: array}}`` (short weight names)."""
  weights = {}
  for layer in keras_model.layers:
    if layer.weights:
      name = _layer_name(layer)
      if name in weights:
        raise WeightsMismatchError(f"two Keras layers with weights are named {name!r}")
      weights[name] = {
        w.name.split("/")[-1].split(":")[0]: np.asarray(w.value) for w in layer.weights
      }
  return weights


def keras_application(backbone: str):
  """The ``keras.applications`` constructor that the port of ``backbone`` copies."""
  import keras  # only the tools, the tests and the Keras peer need Keras

  return getattr(keras.applications, encoder_class(backbone).keras_application)


def keras_features(keras_model, backbone: str, images: np.ndarray) -> list[np.ndarray]:
  """The Keras model's outputs at the port's five feature layers, for raw 0..255 RGB images."""
  import keras

  outputs = [keras_model.get_layer(name).output
             for name in encoder_class(backbone).keras_feature_layers]
  # Keras applications take preprocessed pixels (EfficientNet's preprocessing is a no-op),
  # the ports raw RGB; preprocess_input changes a NumPy input in place: copy.
  preprocess = importlib.import_module(keras_application(backbone).__module__).preprocess_input
  features = keras.Model(keras_model.input, outputs)(preprocess(images.copy()))
  return [np.asarray(f) for f in features]


def _layer_name(layer) -> str:
  """The layer's name, less the number Keras appends to a name that it made up itself.

  Keras names an unnamed layer after its class and numbers later ones in the same process
  (EfficientNet's ``normalization``, then ``normalization_1``), so ports use the bare name.
  """
  words = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", type(layer).__name__)
  automatic = re.sub("([a-z])([A-Z])", r"\1_\2", words).lower()  # Keras's to_snake_case
  return automatic if re.fullmatch(rf"{automatic}(_\d+)?", layer.name) else layer.name


def load_keras_weights(encoder: nnx.Module, keras_model) -> None:
  """Copy a Keras model's variables (BatchNorm moving statistics included) into ``encoder``."""
  load_layer_weights(encoder, keras_layer_weights(keras_model))


def load_layer_weights(encoder: nnx.Module, weights: LayerWeights) -> None:
  """Copy ``{layer: {weight: array}}`` into the modules of ``encoder`` that name those layers.

  Raises `WeightsMismatchError` naming the first layer that is missing, has another shape,
  or has weights that no module of the port takes.
  """
  used = set()
  for path, module in nnx.iter_modules(encoder):
    name = getattr(module, "keras_name", None)
    if name is None:
      continue
    if name not in weights:
      where = "/".join(map(str, path))
      raise WeightsMismatchError(f"Keras layer {name!r} (port module {where}) not in the weights")
    _assign(module, name, weights[name])
    used.add(name)
  unused = [name for name in weights if name not in used]
  if unused:
    raise WeightsMismatchError(f"Keras layer {unused[0]!r} has weights that the port does not use")


def _assign(module: nnx.Module, name: str, weights: Mapping[str, np.ndarray]) -> None:
  for attr, value in _targets(module, name, weights).items():
    variable = getattr(module, attr)
    value, current = np.asarray(value), variable[...]
    if value.shape != current.shape:
      raise WeightsMismatchError(
        f"Keras layer {name!r}: {attr} has shape {value.shape}, the port has {current.shape}"
      )
    variable[...] = jnp.asarray(value, current.dtype)


def _targets(module: nnx.Module, name: str, weights: Mapping[str, np.ndarray]) -> dict:
  """The port's attribute names, each with the Keras array it takes."""
  if isinstance(module, nnx.Conv):
    depthwise = getattr(module, "keras_depthwise", False)
    # Keras 3 names a depthwise kernel "kernel"; Keras 2 (and its .h5 files) "depthwise_kernel".
    kernel = "depthwise_kernel" if depthwise and "depthwise_kernel" in weights else "kernel"
    renames = {kernel: "kernel"}
    if module.bias is not None:
      renames["bias"] = "bias"
  elif isinstance(module, nnx.BatchNorm):
    renames = {"gamma": "scale", "beta": "bias", "moving_mean": "mean", "moving_variance": "var"}
  elif isinstance(module, layers.Normalization):
    # ``count`` only records how many samples Keras adapted on.
    renames = {"mean": "mean", "variance": "variance", "count": None}
  else:
    raise WeightsMismatchError(f"Keras layer {name!r}: no conversion for {type(module).__name__}")
  if set(weights) != set(renames):
    raise WeightsMismatchError(
      f"Keras layer {name!r}: weights {sorted(weights)}, the port expects {sorted(renames)}"
    )
  targets = {attr: weights[key] for key, attr in renames.items() if attr is not None}
  if getattr(module, "keras_depthwise", False):
    kh, kw, cin, mult = targets["kernel"].shape
    # Keras orders depthwise outputs as channel * multiplier + m, as a grouped conv does.
    targets["kernel"] = targets["kernel"].reshape(kh, kw, 1, cin * mult)
  if isinstance(module, layers.Normalization):
    # Keras keeps the statistics with broadcast shape (1, 1, 1, C).
    targets = {attr: np.reshape(v, -1) for attr, v in targets.items()}
  return targets
