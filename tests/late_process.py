"""One process of two reaches the first training collective 35 s after the other, as a slow
compile would make it (run by test_distributed.py).

Usage: python -m tests.late_process --coordinator HOST:PORT --num-processes 2 --process-id I
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
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
  print(float(total(values)))


if __name__ == "__main__":
  main(sys.argv[1:])
