"""``jaxseg.train`` with a SIGTERM to process 1 as epoch 2 starts (run by test_distributed.py):
from then on every process trains a step in no less than SLOW_SECONDS, so that JAX's
preemption service, which polls for the signal every second, agrees on a step to stop at
before training ends.

Usage: python -m tests.support.preempted_train TRAIN_FLAGS...
"""

import os
import signal
import sys
import time

import jax

from jaxseg import loop, train

SIGNAL_STEP = 3  # epoch 2's first: 9 training images in batches of 4 make 2 steps an epoch
SLOW_SECONDS = 1.5


def between_steps(step: int, original=loop.between_steps) -> None:
  if step >= SIGNAL_STEP:
    if step == SIGNAL_STEP and jax.process_index() == 1:
      os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(SLOW_SECONDS)
  original(step)


if __name__ == "__main__":
  loop.between_steps = between_steps
  train.main(sys.argv[1:])
