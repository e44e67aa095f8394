"""Presets as code: ``paper`` (the paper's settings, for a GPU) and ``quick`` (a 2-core CPU)."""

from __future__ import annotations

import jax

from jaxseg.config import Config
from jaxseg.configs import paper, quick

PRESETS = {"paper": paper.get_config, "quick": quick.get_config}


def get_preset(name: str) -> tuple[str, Config]:
  """The preset ``name``; ``auto`` is ``paper`` on an accelerator and ``quick`` on a CPU."""
  if name == "auto":
    name = "quick" if jax.default_backend() == "cpu" else "paper"
  return name, PRESETS[name]()
