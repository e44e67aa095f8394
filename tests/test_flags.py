"""Settings: every Config field is a flag, a --config file is a base, flags override it."""

import dataclasses
import re

import pytest

from jaxseg import flags, train
from jaxseg.config import Config
from jaxseg.errors import JaxsegError


def leaf_names(cls, prefix=""):
  for field in dataclasses.fields(cls):
    if not field.metadata.get("flag", True):
      continue
    if dataclasses.is_dataclass(field.type) or field.name in ("enhance", "augment"):
      yield from leaf_names(type(getattr(Config(), field.name)), prefix + field.name + ".")
    else:
      yield prefix + field.name


def test_help_lists_every_setting(capsys):
  with pytest.raises(SystemExit):
    train.parse_args(["--help"])
  text = capsys.readouterr().out
  names = list(leaf_names(Config))
  assert "augment.rotate_prob" in names and "enhance.contrast" in names
  for name in names:
    assert "--" + name.replace("_", "-") in text, name


def test_config_file_with_flags_on_top(tmp_path):
  path = tmp_path / "experiment.py"
  path.write_text("from jaxseg.configs import paper\n\n"
                  "def get_config():\n"
                  "  return paper.get_config().replace(backbone='densenet121',\n"
                  "                                   target='cytoplasm')\n")
  args = train.parse_args(["--config", str(path), "--batch-size", "8", "--augment.max-rotation",
                           "10", "--enhance.contrast", "1.2", "--freeze-encoder"])
  config, _ = train.settings(args)
  assert (config.backbone, config.target, config.batch_size) == ("densenet121", "cytoplasm", 8)
  assert config.augment.max_rotation == 10 and config.enhance.contrast == 1.2
  assert config.freeze_encoder and config.preset == str(path)
  assert config.image_size == 224  # the file's paper preset underneath


def test_repository_configs_load():
  from pathlib import Path

  files = sorted((Path(__file__).parents[1] / "configs").glob("*.py"))
  assert files
  for path in files:
    assert isinstance(flags.load_config_file(path).validate(), Config)


def test_cache_dir_follows_the_environment_when_asked(monkeypatch, tmp_path):
  config = Config()
  monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "later"))
  assert config.cache_path == tmp_path / "later"


def test_nested_value_its_settings_refuse_names_the_flag():
  with pytest.raises(JaxsegError, match=r"--augment\.scale-range: scale_range"):
    flags.apply(Config(), {"augment.scale_range": (2.0, 1.0)})


@pytest.mark.parametrize("text, expected", [
  ("from jaxseg.config import Config\n\ndef get_config():\n  return Config(epochs=1 / 0)\n",
   r"--config {path}, line 4: ZeroDivisionError: division by zero$"),
  ("import no_such_module\n", r"--config {path}, line 1: ModuleNotFoundError: No module named "
                             r"'no_such_module'$"),
  ("def get_config(:\n", r"--config {path}, line 1: SyntaxError: "),
])
def test_a_config_file_whose_code_fails_is_one_line(tmp_path, capsys, text, expected):
  path = tmp_path / "bad.py"
  path.write_text(text)
  with pytest.raises(SystemExit) as exit_info:
    train.main(["--config", str(path)])
  assert exit_info.value.code == 2
  error = capsys.readouterr().err
  assert re.match(r"jaxseg: error: " + expected.format(path=re.escape(str(path))), error), error
  assert error.count("\n") == 1


def test_a_config_file_that_is_not_python_is_one_line(tmp_path, capsys):
  path = tmp_path / "settings.txt"
  path.write_text("epochs = 3\n")
  with pytest.raises(SystemExit):
    train.main(["--config", str(path)])
  assert capsys.readouterr().err == (f"jaxseg: error: --config {path}: not a Python file (an "
                                     "experiment file is FILE.py with a get_config() that "
                                     "returns a jaxseg Config)\n")
