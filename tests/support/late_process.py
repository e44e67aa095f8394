"""One process of two reaches the first training collective and the first checkpoint
broadcast 35 s after the other, as a slow compile or a slow start before restoring a checkpoint
would make it (run by test_distributed.py).

Usage: python -m tests.support.late_process --coordinator HOST:PORT --num-processes 2 --process-id I
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from jaxseg.engine import data_mesh
from jaxseg.train import parse_args, start_processes

LATE_SECONDS = 35  # gloo's connection timeout is 30 s


def main(argv: list[str]) -> None:
  args = parse_args(argv)
  start_processes(args)
  process_id = args.process_id
  if process_id == 1:
    time.sleep(LATE_SECONDS)
  mesh = data_mesh()
  values = jax.make_array_from_process_local_data(
    NamedSharding(mesh, PartitionSpec("data")),
    np.full(jax.local_device_count(), process_id + 1, np.float32))
  total = jax.jit(lambda v: jnp.sum(v * 2), out_shardings=NamedSharding(mesh, PartitionSpec()))
  # Orbax's broadcasts and barriers run over one device of each process, not the mesh above.
  broadcast = multihost_utils.broadcast_one_to_all(np.float32(process_id + 10))
  print(float(broadcast), float(total(values)))


if __name__ == "__main__":
  main(sys.argv[1:])
