"""Peer programs that `jaxseg.bench` times on the same shapes, each where its library is installed.

A peer module has ``supports(backbone)``, ``program(backbone, images, masks, *, precision)``
returning its train and inference steps as a `jaxseg.bench.timing.Program`, called once each
(`first_calls`), with the fields of jaxseg's it can measure (None for the others), and
``versions()``; the smp peer also has ``time_epochs``, the whole epochs
`jaxseg.bench.epoch` sets beside jaxseg's, and `smp_run`, the whole run `jaxseg.bench.run`
sets beside ``python -m jaxseg.train``.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from jaxseg.data.masks import CELL
from jaxseg.errors import JaxsegError

PEERS = {
  "smp": "jaxseg.bench.peers.smp_unet",      # segmentation_models_pytorch, PyTorch eager
  "keras": "jaxseg.bench.peers.keras_unet",  # Keras 3 on the JAX backend
}


def load_peer(name: str) -> ModuleType:
  """The peer's module; raises `PeerUnavailable` where its libraries do not import. Keras is
  asked for its JAX backend first: Keras reads the setting when it is first imported."""
  if name == "keras":
    os.environ.setdefault("KERAS_BACKEND", "jax")
  try:
    return importlib.import_module(PEERS[name])
  except Exception as error:  # a broken install fails in many ways, not only ImportError
    raise PeerUnavailable(f"{type(error).__name__}: {error}") from error


def load_peers(names, command: str) -> tuple[dict[str, ModuleType], dict[str, dict]]:
  """(the peers of ``names`` that import, the versions of each or why it did not import);
  one that does not is skipped with a line on stderr from ``command``."""
  peers, versions = {}, {}
  for name in names:
    try:
      peers[name] = load_peer(name)
      versions[name] = peers[name].versions()
    except PeerUnavailable as error:
      versions[name] = {"unavailable": str(error)}
      print(f"{command}: peer {name} skipped, it does not import: {error}", file=sys.stderr)
  return peers, versions


def check_target(names, target: str) -> None:
  """Peers train binary models: a 3-class jaxseg model (``--target cell``) has none beside it."""
  if names and target == CELL:
    raise JaxsegError(f"--peer {','.join(names)}: the peers train binary models; measure "
                      "--target cell without --peer")


class PeerUnavailable(Exception):
  """A peer's libraries are missing or do not import; the message says why."""
