"""Command-line flags generated from `Config`: one flag per field, nested ones dotted.

``--batch-size 8`` sets ``batch_size``; ``--augment.rotate-prob 0`` sets a field of the
nested ``augment`` settings. A flag left out keeps the value of the preset or ``--config``
file underneath, so `overrides` returns only the flags that were given.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import traceback
import types
import typing
from pathlib import Path

from jaxseg.config import Config
from jaxseg.errors import JaxsegError


def add_config_flags(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
  """One flag per `Config` field (and per field of its nested settings), default None; none
  for the fields in ``exclude``, whose flags a command gives a meaning of its own."""
  group = parser.add_argument_group("settings (override the preset or --config file)")
  for name, kind, field in _leaf_fields(Config):
    if name in exclude:
      continue
    flag = "--" + name.replace("_", "-")
    options = dict(dest=name, default=None, help=field.metadata.get("help", ""))
    if kind is bool:
      options["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kind) is tuple:
      options.update(type=typing.get_args(kind)[0], nargs=len(typing.get_args(kind)),
                     metavar=name.rsplit(".", 1)[-1].upper())
    elif field.metadata.get("choices"):
      options.update(type=kind, choices=field.metadata["choices"])
    else:
      options.update(type=kind, metavar=kind.__name__.upper())
    group.add_argument(flag, **options)


def overrides(args: argparse.Namespace) -> dict:
  """``{field: value}`` of the setting flags that were given (dotted names for nested ones);
  a field without a flag (`add_config_flags`'s ``exclude``) is none of them."""
  values = {name: getattr(args, name, None) for name, _, _ in _leaf_fields(Config)}
  return {name: tuple(value) if isinstance(value, list) else value
          for name, value in values.items() if value is not None}


def apply(config: Config, changes: dict) -> Config:
  """``config`` with ``changes`` (as `overrides` gives them) made; a nested value that its
  settings refuse is a `JaxsegError` naming the flag."""
  top = {name: value for name, value in changes.items() if "." not in name}
  for group in {name.split(".")[0] for name in changes if "." in name}:
    nested = {name.split(".", 1)[1]: value for name, value in changes.items()
              if name.startswith(group + ".")}
    try:
      top[group] = dataclasses.replace(getattr(config, group), **nested)
    except ValueError as error:
      flags = ", ".join("--" + f"{group}.{name}".replace("_", "-") for name in nested)
      raise JaxsegError(f"{flags}: {error}") from None
  return config.replace(**top)


def load_config_file(path: Path) -> Config:
  """The `Config` that ``get_config()`` of the Python file ``path`` returns; a file that is not
  Python, or whose code fails, is one line naming the file, the line and the exception."""
  path = Path(path)
  if not path.is_file():
    raise JaxsegError(f"--config {path}: no such file")
  spec = importlib.util.spec_from_file_location(f"jaxseg_config_{path.stem}", path)
  if spec is None or path.suffix != ".py":
    raise JaxsegError(f"--config {path}: not a Python file (an experiment file is FILE.py "
                      "with a get_config() that returns a jaxseg Config)")
  module = importlib.util.module_from_spec(spec)
  with _failing_in(path):
    spec.loader.exec_module(module)
  if not callable(getattr(module, "get_config", None)):
    raise JaxsegError(f"--config {path}: defines no get_config()")
  with _failing_in(path):
    config = module.get_config()
  if not isinstance(config, Config):
    raise JaxsegError(f"--config {path}: get_config() returned {type(config).__name__}, "
                      "not a jaxseg Config")
  return config.replace(preset=str(path))


@contextlib.contextmanager
def _failing_in(path: Path):
  """An exception raised by the code of the experiment file ``path`` as a `JaxsegError`
  naming the file's line where it was raised or passed through last."""
  try:
    yield
  except JaxsegError:
    raise
  except Exception as error:  # noqa: BLE001 - the user's code: any failure is one line
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
             if Path(frame.filename).resolve() == path.resolve()]
    message = str(error)
    if isinstance(error, SyntaxError):  # raised by the parser, not from a line that ran
      lines, message = [error.lineno] if error.lineno else [], error.msg
    where = f"{path}, line {lines[-1]}" if lines else str(path)
    raise JaxsegError(f"--config {where}: {type(error).__name__}: {message}") from None


def _leaf_fields(cls, prefix: str = ""):
  """(dotted name, type, field) of every field that a flag sets, nested dataclasses' fields
  in their place."""
  hints = typing.get_type_hints(cls)
  for field in dataclasses.fields(cls):
    kind = hints[field.name]
    if isinstance(kind, types.UnionType):  # `str | None`: the flag takes the str
      kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if not field.metadata.get("flag", True):
      continue
    if dataclasses.is_dataclass(kind):
      yield from _leaf_fields(kind, prefix + field.name + ".")
    else:
      yield prefix + field.name, kind, field
