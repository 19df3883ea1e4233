"""mier_tf.cli: a run's saved config is read as data, never as code."""
import os

import gin
import pytest

from mier_tf import cli
from mier_tf.train import job  # noqa: F401  registers every configurable


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.fixture
def saved_config(tmp_path):
  """The smoke config as train.py saves it (every binding, flat), in a run directory."""
  cli.parse_gin([os.path.join(cli.REPO_GIN_DIR, "smoke.gin")], [], root_dir="unused")
  text = gin.config_str()
  gin.clear_config()
  path = tmp_path / "operative_config.gin"
  path.write_text(text)
  return path, text


def test_a_saved_config_parses_as_data_with_the_users_bindings_after_it(saved_config):
  path, _ = saved_config
  cli.parse_run_config(str(path), ["adapt_ood.num_epochs = 7"])
  assert gin.query_parameter("MetaTrainingRun.family") == "cheetah_vel_hard"
  assert gin.query_parameter("ContextualDynamicsModel.hidden_sizes") == (32, 32)
  assert gin.query_parameter("adapt_ood.num_epochs") == 7


def test_a_config_of_an_earlier_version_is_read_without_its_removed_parameters(
    saved_config, caplog):
  """Runs made before the evaluation protocol recorded adapt_ood.adapt_data_steps and
  MetaTrainingRun.eval_adapt_steps (the campaign's early milestones do): they still adapt."""
  path, text = saved_config
  path.write_text("adapt_ood.adapt_data_steps = 400\n" + text +
                  "\nMetaTrainingRun.eval_adapt_steps = 200\n")
  cli.parse_run_config(str(path), ["adapt_ood.num_epochs = 7"])
  assert gin.query_parameter("adapt_ood.num_epochs") == 7
  notes = [r.getMessage() for r in caplog.records if "leaving out" in r.getMessage()]
  assert len(notes) == 2 and "EvalProtocol.adapt_steps replaces it" in notes[0]
  # Any other unknown parameter is still an error naming the file.
  gin.clear_config()
  path.write_text(text + "\nadapt_ood.adapt_data_stepz = 400\n")
  with pytest.raises(cli.UsageError, match="adapt_data_stepz"):
    cli.parse_run_config(str(path))


@pytest.mark.parametrize("line, message", [
    ("include '/tmp/evil.gin'", "includes or imports"),
    ("from __gin__ import dynamic_registration", "includes or imports"),
    ("import os", "includes or imports"),
    ("os.system.command = 'touch /tmp/x'", "binds no configurable of mier_tf"),
    ("MetaTrainingRun.family = @os.system", "'@os.system' is not a mier_tf configurable"),
    ("MetaTrainingRun.family = @tf_agents_thing()", "is not a mier_tf configurable"),
])
def test_code_in_a_saved_config_is_refused_naming_the_file(saved_config, line, message):
  path, text = saved_config
  path.write_text(text + "\n" + line + "\n")
  with pytest.raises(cli.UsageError, match=message) as error:
    cli.parse_run_config(str(path))
  assert str(path) in str(error.value)
  if "includes" in message:  # the line number is named
    assert f":{len(text.splitlines()) + 2}:" in str(error.value)


def test_seed_flag_binds_every_seed_and_names_the_default_directory():
  root = cli.parse_gin([os.path.join(cli.REPO_GIN_DIR, "smoke.gin")], cli.seed_bindings(3))
  assert gin.query_parameter("MetaTrainingRun.seed") == 3
  assert gin.query_parameter("adapt_ood.seed") == 3
  assert os.path.basename(root).startswith("smoke__s3__")
  assert cli.seed_bindings(None) == []


def test_an_unquoted_string_binding_is_told_to_quote_it():
  with pytest.raises(cli.UsageError, match="a string binding needs quotes"):
    cli.parse_gin([os.path.join(cli.REPO_GIN_DIR, "smoke.gin")],
                  ["MetaTrainingRun.family=cheetah_vel"], root_dir="unused")


def test_error_lines_lose_gins_call_context_and_its_memory_addresses(capsys):
  def fail():
    raise ValueError("meta_train.num_epochs must be an integer >= 1; got -1 In call to "
                     "configurable 'meta_train' (<function meta_train at 0x7f96dce7b2e0>) "
                     "In call to configurable 'train_and_adapt' (<function train_and_adapt "
                     "at 0x7f0>)")
  with pytest.raises(SystemExit) as exit_info, cli.one_line_errors():
    fail()
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == (
      "error: meta_train.num_epochs must be an integer >= 1; got -1\n")


def test_run_directories_are_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  smoke = os.path.join(cli.REPO_GIN_DIR, "smoke.gin")
  assert cli.parse_gin([smoke], [], root_dir="runs/x") == str(tmp_path / "runs" / "x")
  default = cli.parse_gin([smoke], [])
  assert default.startswith(str(tmp_path / "runs" / "smoke__s0__"))
