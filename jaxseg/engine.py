"""Model state and the jitted steps: one train step and one eval step serve every backbone.

The model is split once into a static graph definition and arrays (`TrainState`); the steps
are pure functions of those arrays under `jax.jit`, so no Python object graph is walked per
step. Batches are sharded along the ``data`` axis of a mesh of all devices, the state is
replicated; with one device the mesh has one entry and the code path is the same.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from jaxseg.config import Config
from jaxseg.data.augment import Augment, augment_batch
from jaxseg.errors import JaxsegError
from jaxseg.losses import multiclass_soft_jaccard_loss, soft_jaccard_loss
from jaxseg.metrics import confusion_counts, confusion_matrices
from jaxseg.models import build_model
from jaxseg.models.layers import assign
from jaxseg.platform import compiler_options
from jaxseg.weights.store import load_encoder_weights


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any        # nnx.Param variables, float32
  model_state: Any   # everything else: BatchNorm statistics, constants
  opt_state: Any


@dataclasses.dataclass(frozen=True)
class Model:
  """A model's graph definitions for training and evaluation, its optimiser (None where it is
  built without one, for evaluation or prediction), and the kernels its layers are in
  (`jaxseg.models.kernels`), which choose the steps' compiler options."""

  train_graph: Any
  eval_graph: Any
  statistics_graph: Any  # the training graph measuring BatchNorm statistics (see below)
  tx: optax.GradientTransformation | None
  kernels: str


def build(config: Config, kernels: str, *, optimizer: bool = True, abstract: bool = False,
          steps_per_epoch: int | None = None) -> tuple[Model, TrainState]:
  """``config``'s network with its layers in ``kernels`` forms, `split`: initialised from
  ``config.seed`` with the encoder weights that ``config.weights`` names, or with ``abstract``
  shapes and dtypes alone, for a checkpoint to be restored into (no initialiser runs).
  ``steps_per_epoch``: training steps in an epoch, which the optimizer of a cosine schedule
  needs (`learning_rate_schedule`; a ValueError without it)."""
  if abstract:
    network = nnx.eval_shape(lambda: build_model(config, kernels=kernels))
  else:
    network = build_model(config, kernels=kernels)
    load_encoder_weights(network.encoder, config)
  return split(config, network, kernels, optimizer=optimizer, steps_per_epoch=steps_per_epoch)


def split(config: Config, network: nnx.Module, kernels: str, *, optimizer: bool = True,
          steps_per_epoch: int | None = None) -> tuple[Model, TrainState]:
  """``network`` (its layers in ``kernels`` forms) split into graph definitions and its
  initial train state; without ``optimizer`` (evaluation, prediction) there is no optimizer
  and the state holds no optimizer state. An abstract network (`nnx.eval_shape`) gives an
  abstract state. ``steps_per_epoch``: as `build` takes it."""
  network.eval()
  eval_graph, params, model_state = nnx.split(network, nnx.Param, ...)
  network.train()
  if config.freeze_encoder:
    network.encoder.eval()  # a frozen encoder's BatchNorm keeps its ImageNet statistics
  train_graph = nnx.split(network, nnx.Param, ...)[0]
  abstract = any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(params))
  tx = opt_state = None
  if optimizer:
    tx = _optimizer(config, params, steps_per_epoch)
    opt_state = jax.eval_shape(tx.init, params) if abstract else tx.init(params)
  step = jax.ShapeDtypeStruct((), jnp.int32) if abstract else jnp.zeros((), jnp.int32)
  state = TrainState(step=step, params=params, model_state=model_state, opt_state=opt_state)
  return Model(train_graph, eval_graph, _statistics_graph(network), tx, kernels), state


def _statistics_graph(model: nnx.Module):
  """The training graph with every trained BatchNorm keeping the statistics of the batch it
  last saw (momentum 0), so a forward pass reads them off; dropout off, as in evaluation."""
  model = nnx.clone(model)
  for _, module in nnx.iter_modules(model):
    if isinstance(module, nnx.BatchNorm):
      module.momentum = 0.0
    elif isinstance(module, nnx.Dropout):
      module.deterministic = True
  return nnx.split(model, nnx.Param, ...)[0]


def _trained_norms(network: nnx.Module) -> list[nnx.BatchNorm]:
  return [module for _, module in nnx.iter_modules(network)
          if isinstance(module, nnx.BatchNorm) and not module.use_running_average]


def learning_rate_schedule(config: Config,
                           steps_per_epoch: int | None = None) -> optax.ScalarOrSchedule:
  """The Adam learning rate of ``config``'s training: ``config.learning_rate`` itself under the
  constant schedule, so its optimizer state is plain Adam's and runs from before schedules
  restore; under the cosine one, a function of the step count (the steps done so far, which
  the optimizer state holds, so a resumed run carries on along it): a linear rise from 0 over
  the warm-up epochs to ``config.learning_rate``, then a cosine decay that reaches 0 as the
  last step of the last epoch completes (optax's ``decay_steps`` counts the warm-up too)."""
  if config.lr_schedule == "constant":
    return config.learning_rate
  if steps_per_epoch is None or steps_per_epoch < 1:
    raise ValueError(f"a cosine learning rate schedule needs the training steps per epoch "
                     f"(steps_per_epoch at least 1), not {steps_per_epoch!r}")
  # Without warm-up optax's schedule is the cosine decay alone, from the peak at step 0.
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0, peak_value=config.learning_rate,
    warmup_steps=config.warmup_epochs * steps_per_epoch,
    decay_steps=config.epochs * steps_per_epoch, end_value=0.0)


def learning_rate_at(config: Config, steps_per_epoch: int | None, step: int) -> float:
  """The learning rate of `learning_rate_schedule` after ``step`` training steps: the rate
  the next step takes. ``steps_per_epoch`` may be None under the constant schedule."""
  rate = learning_rate_schedule(config, steps_per_epoch)
  return float(rate(step)) if callable(rate) else float(rate)


def _optimizer(config: Config, params,
               steps_per_epoch: int | None) -> optax.GradientTransformation:
  adam = optax.adam(learning_rate_schedule(config, steps_per_epoch))
  if not config.freeze_encoder:
    return adam
  labels = jax.tree_util.tree_map_with_path(
    lambda path, _: "frozen" if _key(path[0]) == "encoder" else "trained", params)
  return optax.multi_transform({"trained": adam, "frozen": optax.set_to_zero()}, labels)


def _key(entry) -> str:
  return str(getattr(entry, "key", getattr(entry, "name", entry)))


def segmentation_loss(logits: jax.Array, masks: jax.Array) -> jax.Array:
  """The soft Jaccard loss of a binary run's one channel against 0/1 masks, or the
  multi-class one of a 3-class run's logits against class masks."""
  if logits.shape[-1] == 1:
    return soft_jaccard_loss(logits[..., 0], masks)
  return multiclass_soft_jaccard_loss(logits, masks)


def probabilities(logits: jax.Array) -> jax.Array:
  """Per pixel, a binary run's target probability (B, H, W), or a 3-class run's probability
  of each class (B, H, W, C)."""
  if logits.shape[-1] == 1:
    return jax.nn.sigmoid(logits[..., 0])
  return jax.nn.softmax(logits, axis=-1)


def predicted_mask(probabilities, channels: int):
  """The mask a model predicts from its `probabilities` (uint8; NumPy's or JAX's array, as
  given): a binary run's target where its probability is above 0.5, a 3-class run's most
  probable class; ``channels``: the model's output channels. Evaluation, pictures and
  `jaxseg.predict` all decide by it."""
  if channels == 1:
    return (probabilities > 0.5).astype(np.uint8)
  return probabilities.argmax(axis=-1).astype(np.uint8)


def train_step(model: Model, augment: Augment, state: TrainState, images, masks, key):
  """Augment on the device, forward, soft Jaccard loss, gradient, Adam update."""
  key = jax.random.fold_in(key, state.step)
  augment_key, dropout_key = jax.random.split(key)
  images = images.astype(jnp.float32)
  if augment.active:
    images, masks = augment_batch(augment_key, images, masks, augment)

  def loss_fn(params, model_state):
    # copy=True: fresh variables at this trace level, so BatchNorm may update them here.
    network = nnx.merge(model.train_graph, params, model_state, copy=True)
    logits = network(images, rngs=nnx.Rngs(dropout=dropout_key))
    model_state = nnx.split(network, nnx.Param, ...)[2]
    return segmentation_loss(logits, masks), model_state

  (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
    state.params, state.model_state)
  updates, opt_state = model.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, model_state=model_state,
                            opt_state=opt_state)
  return new_state, {"loss": loss}


def batch_moments(model: Model, state: TrainState, images) -> list[tuple[jax.Array, jax.Array]]:
  """Per trained BatchNorm, the mean and mean square of its input over this batch."""
  network = nnx.merge(model.statistics_graph, state.params, state.model_state, copy=True)
  network(images.astype(jnp.float32))
  return [(norm.mean[...], norm.var[...] + jnp.square(norm.mean[...]))
          for norm in _trained_norms(network)]


def with_moments(model: Model, state: TrainState, sums, count) -> TrainState:
  """``state`` with BatchNorm statistics from moments summed over ``count`` batches."""
  network = nnx.merge(model.statistics_graph, state.params, state.model_state, copy=True)
  for norm, (mean_sum, square_sum) in zip(_trained_norms(network), sums, strict=True):
    mean = mean_sum / count
    assign(norm.mean, mean)
    assign(norm.var, jnp.maximum(square_sum / count - jnp.square(mean), 0.0))
  return state.replace(model_state=nnx.split(network, nnx.Param, ...)[2])


def predict_logits(model: Model, state: TrainState, images) -> jax.Array:
  """The evaluation-mode network's logits, (B, H, W, channels)."""
  network = nnx.merge(model.eval_graph, state.params, state.model_state)
  return network(images.astype(jnp.float32))


def eval_step(model: Model, state: TrainState, images, masks) -> tuple[jax.Array, jax.Array]:
  """(counts, predicted masks), per image: the predicted mask (`predicted_mask`, which pictures
  draw from the same pass) and its counts: a binary run's (tp, fp, fn, tn) of the target, or a
  3-class run's confusion matrix (`confusion_matrices`)."""
  logits = predict_logits(model, state, images)
  channels = logits.shape[-1]
  predicted = predicted_mask(probabilities(logits), channels)
  if channels == 1:
    return confusion_counts(predicted, masks), predicted
  return confusion_matrices(predicted, masks, channels), predicted


def data_mesh() -> jax.sharding.Mesh:
  """Every process's devices on one ``data`` axis: the mesh the steps split batches over."""
  return jax.sharding.Mesh(np.array(jax.devices()), ("data",))


def sync_processes() -> None:
  """Return once every process has called it, having connected the device groups later
  collectives run over (see `jaxseg.train`): a sum over `data_mesh`, as the training steps
  run, and a broadcast from process 0, as Orbax's checkpoint barriers and broadcasts run (over
  one device of each process)."""
  mesh = data_mesh()
  ones = jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec("data")),
                                                np.ones(jax.local_device_count(), np.int32))
  jax.block_until_ready(jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, PartitionSpec()))(ones))
  multihost_utils.broadcast_one_to_all(np.int32(0))


class Steps:
  """The jitted steps over a mesh of every device, batches split along its ``data`` axis."""

  def __init__(self, model: Model, augment: Augment, batch_size: int):
    devices = jax.devices()  # every process's: one global mesh
    if batch_size % len(devices):
      raise JaxsegError(
        f"--batch-size {batch_size} does not split over {len(devices)} devices; "
        f"use a multiple of {len(devices)}"
      )
    mesh = data_mesh()
    self.replicated = NamedSharding(mesh, PartitionSpec())
    self.sharded = NamedSharding(mesh, PartitionSpec("data"))
    self.batch_size = batch_size
    jit = functools.partial(jax.jit, compiler_options=compiler_options(model.kernels))
    self.train = jit(
      functools.partial(train_step, model, augment),
      in_shardings=(self.replicated, self.sharded, self.sharded, self.replicated),
      out_shardings=(self.replicated, self.replicated),
      donate_argnums=0,
    )
    # Evaluation results are small: replicate them so every process can read them.
    self.eval = jit(functools.partial(eval_step, model),
                    in_shardings=(self.replicated, self.sharded, self.sharded),
                    out_shardings=self.replicated)
    self.moments = jit(functools.partial(batch_moments, model),
                       in_shardings=(self.replicated, self.sharded),
                       out_shardings=self.replicated)
    self.add = jit(lambda a, b: jax.tree.map(jnp.add, a, b))
    self.with_moments = jit(functools.partial(with_moments, model), donate_argnums=0,
                            out_shardings=self.replicated)
    self.probabilities = jit(
      lambda state, images: probabilities(predict_logits(model, state, images)),
      in_shardings=(self.replicated, self.sharded), out_shardings=self.replicated)

  def place(self, state: TrainState) -> TrainState:
    """Replicate ``state`` over the mesh (every process holds the same values)."""
    return jax.tree.map(lambda x: self._global(np.asarray(x), self.replicated), state)

  def placement(self, state: TrainState) -> TrainState:
    """``state``'s shapes and dtypes, replicated over the mesh: what a checkpoint is restored
    into."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                       sharding=self.replicated), state)

  @staticmethod
  def _global(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])

  def batch(self, *arrays: np.ndarray):
    """Global batches onto the mesh; each process places the rows of its own devices."""
    return tuple(self._global(a, self.sharded) for a in arrays)

  def padded(self, *arrays: np.ndarray):
    """Pad a last, short batch to the compiled batch size (the extra rows are dropped later)."""
    missing = self.batch_size - len(arrays[0])
    return tuple(np.concatenate([a, np.zeros((missing, *a.shape[1:]), a.dtype)])
                 if missing else a for a in arrays)

  def evaluate(self, state: TrainState, batches) -> tuple[np.ndarray, np.ndarray]:
    """Per-image confusion counts and predicted masks (`eval_step`) over every batch, in
    order."""
    results = [self._dispatch(self.eval, state, images, masks) for images, masks in batches]
    return tuple(_gather([(result[part], count) for result, count in results])
                 for part in range(2))

  def recompute_statistics(self, state: TrainState, batches) -> TrainState:
    """Replace BatchNorm's running averages by the statistics of the current weights over
    ``batches`` ("precise BatchNorm"): each channel's mean, and its variance about that mean.

    The running averages mix statistics of the weights of many steps back, and evaluation
    with them swings from epoch to epoch ("BatchNorm statistics are recomputed before each
    validation" in docs/training.md).
    """
    sums, count = None, 0
    for images, _ in batches:
      moments = self.moments(state, *self.batch(images))
      sums, count = (moments if sums is None else self.add(sums, moments)), count + 1
    if count == 0:
      raise JaxsegError("no full batch of training images to measure BatchNorm statistics on")
    return self.with_moments(state, sums, count)

  def predict(self, state: TrainState, images: np.ndarray) -> np.ndarray:
    """`probabilities` for any number of images, a batch at a time."""
    return _gather([self._dispatch(self.probabilities, state, images[i:i + self.batch_size])
                    for i in range(0, len(images), self.batch_size)])

  def _dispatch(self, step, state: TrainState, *arrays: np.ndarray) -> tuple[jax.Array, int]:
    # Every batch is sent before any result is read back, so the host prepares the next
    # batch while the device computes instead of waiting for each one.
    return step(state, *self.batch(*self.padded(*arrays))), len(arrays[0])


def _gather(results: list[tuple[jax.Array, int]]) -> np.ndarray:
  return np.concatenate([np.asarray(result)[:count] for result, count in results])
