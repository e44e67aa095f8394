"""Presets as code: ``paper`` (the paper's settings, for a GPU) and ``quick`` (a 2-core CPU).

They ship inside the package, so an installed jaxseg has them; experiment files built on them
live in the repository's ``configs/`` and load with ``--config FILE``.
"""

from __future__ import annotations

import jax

from jaxseg.config import Config
from jaxseg.configs import paper, quick

PRESETS = {"paper": paper.get_config, "quick": quick.get_config}


def get_preset(name: str) -> Config:
  """The preset ``name``; ``auto`` is ``paper`` on an accelerator and ``quick`` on a CPU."""
  if name == "auto":
    name = "quick" if jax.default_backend() == "cpu" else "paper"
  return PRESETS[name]().replace(preset=name)
