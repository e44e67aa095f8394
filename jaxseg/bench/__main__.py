"""``python -m jaxseg.bench``: the step benchmark (`jaxseg.bench.steps`)."""

from jaxseg.cli import run_command

run_command("jaxseg.bench.steps")
