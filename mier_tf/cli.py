"""What the scripts share: gin parsing, default output directories, one-line errors."""
import contextlib
import datetime
import glob
import logging
import os
import re
import sys
from typing import Iterator, List, Optional, Sequence, Tuple

import gin

REPO_GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")


class UsageError(ValueError):
  """Bad command-line input: the message is shown to the user as is."""


def shipped_configs() -> list:
  """Names of the gin files shipped in gin/."""
  return sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO_GIN_DIR, "*.gin")))


def _resolve(gin_file: str) -> str:
  if os.path.isfile(gin_file):
    return gin_file
  candidate = os.path.join(REPO_GIN_DIR, os.path.basename(gin_file))
  if os.path.isfile(candidate) and os.path.dirname(gin_file) in ("", "gin"):
    return candidate
  raise UsageError(f"gin file not found: {gin_file} (shipped configs in gin/: "
                   f"{', '.join(shipped_configs())})")


def parse_gin(gin_files: Sequence[str], gin_bindings: Sequence[str],
              root_dir: Optional[str] = None) -> str:
  """Parses gin files and bindings; returns the output directory to use.

  Args:
    gin_files: config files; a bare name (ant_negjoints.gin) is looked up in gin/.
    gin_bindings: bindings applied after the files.
    root_dir: output directory; default runs/<config>__s<seed>__<time> in the current
      directory. Returned as an absolute path.
  """
  if not gin_files:
    raise UsageError(f"--gin_file is required (shipped configs in gin/: "
                     f"{', '.join(shipped_configs())})")
  paths = [_resolve(f) for f in gin_files]
  for path in paths:
    gin.add_config_file_search_path(os.path.dirname(os.path.abspath(path)))
  gin.add_config_file_search_path(REPO_GIN_DIR)
  logging.disable(logging.ERROR)  # gin logs every include path it tries before finding one
  try:
    gin.parse_config_files_and_bindings(paths, gin_bindings, finalize_config=False)
  except (ValueError, SyntaxError, KeyError, IOError) as e:
    raise _gin_parse_error(
        f"{', '.join(gin_files)}"
        f"{'; bindings ' + repr(list(gin_bindings)) if gin_bindings else ''}", e) from e
  finally:
    logging.disable(logging.NOTSET)
  if root_dir is None:
    name = os.path.splitext(os.path.basename(paths[0]))[0]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
      seed = gin.query_parameter("MetaTrainingRun.seed")
    except ValueError:
      seed = 0
    root_dir = os.path.join("runs", f"{name}__s{seed}__{stamp}")
  return os.path.abspath(root_dir)  # a default lands in the current directory: say which


def seed_bindings(seed: Optional[int]) -> list:
  """The bindings of a --seed flag: every seeded part of a run (none if seed is None)."""
  if seed is None:
    return []
  return [f"MetaTrainingRun.seed = {int(seed)}", f"adapt_ood.seed = {int(seed)}"]


_STATEMENT = re.compile(r"^((?:[\w.]+/)*[A-Za-z_][\w.]*)\s*=", re.MULTILINE)
_REFERENCE = re.compile(r"@((?:[\w.]+/)*[A-Za-z_][\w.]*)")
_CODE_LINE = re.compile(r"^\s*(include|import|from)\b")
# Parameters that runs of earlier versions recorded and mier_tf no longer has: a run's config
# that binds them is still read (their lines are left out, with a note). CHANGELOG.md.
REMOVED_PARAMETERS = {
    "adapt_ood.adapt_data_steps": "2026-12-03; the evaluation protocol's "
                                  "EvalProtocol.adapt_steps replaces it",
    "MetaTrainingRun.eval_adapt_steps": "2026-12-03; the evaluation protocol's "
                                        "EvalProtocol.adapt_steps replaces it",
}


def _drop_removed_parameters(path: str, text: str) -> str:
  kept = []
  for line in text.splitlines():
    match = _STATEMENT.match(line)
    selector = match.group(1).split("/")[-1] if match else None
    if selector in REMOVED_PARAMETERS:
      logging.warning("%s: leaving out %r (removed %s)", path, line.strip(),
                      REMOVED_PARAMETERS[selector])
      continue
    kept.append(line)
  return "\n".join(kept) + "\n"


def _project_configurable(name: str, packages: Sequence[str] = ("mier_tf",)) -> bool:
  """Whether `name` (a selector, without scope or parameter) is a configurable of `packages`."""
  match = gin.config._REGISTRY.get_match(name)  # pylint: disable=protected-access
  return match is not None and match.module.split(".")[0] in packages


def run_config(root_dir: str, accepted: str = "a run of scripts/train.py") -> str:
  """ROOT/operative_config.gin of a run directory, or a UsageError naming it and what
  --root_dir must be (`accepted`)."""
  config = os.path.join(root_dir, "operative_config.gin")
  if not os.path.isfile(config):
    raise UsageError(f"{config} not found: --root_dir must be {accepted}")
  return config


def parse_run_config(path: str, gin_bindings: Sequence[str] = ()) -> None:
  """Parses a run's saved gin config as data: bindings of mier_tf's own configurables only.

  A run directory may come from anyone (a colleague, a download): its config must not run
  code. Gin files can `include` and `import` (with dynamic registration, any Python
  callable), so a line that includes or imports is refused; every binding must set a
  parameter of a configurable of mier_tf (or of the TF-Agents networks it builds, which
  gin records too), and every `@` reference must name one of mier_tf's. Nothing of the
  run's directory is put on gin's include path.

  Args:
    path: the run's operative_config.gin.
    gin_bindings: the user's own bindings, applied after it (they are trusted).

  Raises:
    UsageError: naming the file and line at fault.
  """
  try:
    with open(path) as f:
      text = f.read()
  except OSError as e:
    raise UsageError(f"{path}: unreadable ({e.strerror})") from e
  for number, line in enumerate(text.splitlines(), 1):
    if _CODE_LINE.match(line):
      raise UsageError(f"{path}:{number}: a run's config is read as data, and this line "
                       f"includes or imports ({line.strip()[:60]!r}); it is refused")
  text = _drop_removed_parameters(path, text)
  for selector in _STATEMENT.findall(text):
    configurable = selector.split("/")[-1].rsplit(".", 1)[0]  # drop scope and parameter
    if not _project_configurable(configurable, ("mier_tf", "tf_agents")):
      raise UsageError(f"{path}: {selector!r} binds no configurable of mier_tf; a run's "
                       "config may only bind mier_tf's own")
  for selector in _REFERENCE.findall(text):
    if not _project_configurable(selector.split("/")[-1]):
      raise UsageError(f"{path}: '@{selector}' is not a mier_tf configurable; a run's "
                       "config may only refer to mier_tf's own")
  logging.disable(logging.ERROR)
  try:
    gin.parse_config(text)
    gin.parse_config_files_and_bindings([], gin_bindings, finalize_config=False)
  except (ValueError, SyntaxError, KeyError, IOError) as e:
    raise _gin_parse_error(f"{path}; bindings {list(gin_bindings)!r}", e) from e
  finally:
    logging.disable(logging.NOTSET)


def _without_gin_context(message: str) -> str:
  """The message without the " In call to configurable 'X' (<function X at 0x...>)" tails
  gin appends for each configurable the error passed through."""
  return re.sub(r"\s*In call to configurable '[^']*' \(<[^>]*>\)", "", message).strip()


def _gin_parse_error(source: str, error: Exception) -> UsageError:
  """One line for a config gin cannot parse, with the usual cause's fix."""
  first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  if "malformed node or string" in first:  # gin evaluates values as Python literals
    first = ("a value is not a Python literal (a string binding needs quotes, e.g. "
             "MetaTrainingRun.family='cheetah_vel')")
  return UsageError(f"bad gin config ({source}): {first}")


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
  """Turns the errors a user can cause into one line on stderr and exit status 2.

  Also keeps TensorFlow's own INFO/WARNING chatter (SavedModel internals) out of the log.
  """
  logging.getLogger("tensorflow").setLevel(logging.ERROR)
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  absl_logging.set_verbosity(absl_logging.ERROR)  # TF's SavedModel code logs through absl
  logging.getLogger().setLevel(logging.INFO)  # ...while our own progress lines stay visible
  # One plain stderr handler instead of absl's, so that the progress bars can route log lines
  # above themselves (tqdm's logging_redirect_tqdm only knows stream handlers).
  root = logging.getLogger()
  for handler in list(root.handlers):
    if handler is absl_logging.get_absl_handler():
      root.removeHandler(handler)
  if not any(getattr(h, "_mier_tf", False) for h in root.handlers):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler._mier_tf = True  # pylint: disable=protected-access
    root.addHandler(handler)
  logging.getLogger("absl").setLevel(logging.ERROR)
  from mier_tf.train import checkpoints, run_dir  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  known = (UsageError, checkpoints.CheckpointError, run_dir.ConfigMismatchError,
           run_dir.RunDirectoryBusy, ValueError, FileNotFoundError, FloatingPointError)
  try:
    yield
  except tf.errors.InvalidArgumentError as e:
    if not any(s in e.message for s in ("not finite", "NaN", "inf or nan")):
      raise
    detail = next((line.strip() for line in e.message.splitlines()
                   if any(s in line for s in ("not finite", "NaN", "inf or nan"))),
                  e.message.splitlines()[0])
    sys.stderr.write(f"error: training diverged: {detail}\n")
    sys.exit(3)
  except known as e:
    if os.environ.get("MIER_DEBUG"):
      raise
    message = _without_gin_context(" ".join(str(e).split())) or type(e).__name__
    logging.debug("full error", exc_info=True)
    sys.stderr.write(f"error: {message}\n")
    sys.exit(2)
  except OSError as e:  # a root_dir that is a file or read-only, a full disk...
    if os.environ.get("MIER_DEBUG"):
      raise
    where = f"{e.filename}: " if e.filename else ""
    sys.stderr.write(f"error: {where}{e.strerror or e}\n")
    sys.exit(2)


def define_run_flags(example_config: str, root_dir_help: str) -> None:
  """--gin_file, --gin_bindings, --root_dir and --seed: how train.py and launch.py name a run."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_multi_string("gin_file", [], f"Gin config file(s), e.g. {example_config}.")
  flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings overriding the files.")
  flags.DEFINE_string("root_dir", None, root_dir_help)
  flags.DEFINE_integer("seed", None, "Seeds everything (binds MetaTrainingRun.seed and "
                       "adapt_ood.seed); default: the config's.")


def parse_run_flags(flag_values) -> Tuple[str, List[str]]:
  """Parses the gin of `define_run_flags`' flags; returns (root_dir, the bindings used)."""
  bindings = list(flag_values.gin_bindings) + seed_bindings(flag_values.seed)
  return parse_gin(flag_values.gin_file, bindings, flag_values.root_dir), bindings


def define_export_flags() -> None:
  """--root_dir, --export_dir and --family: how evaluate.py and identify.py find an export."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_string("root_dir", None, "A run's directory (its family is read from run.json).")
  flags.DEFINE_string("export_dir", None, "A run's export/ directory (needs --family).")
  flags.DEFINE_string("family", None, "Task family name (default: the run's).")


def define_json_flag() -> None:
  """--json: how evaluate.py and identify.py give their report to programs."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_bool("json", False, "Print the report as JSON on stdout (the summary then goes "
                    "to stderr); default: the summary alone, on stdout.")


def print_report(report: dict, summary: str, as_json: bool) -> None:
  """A script's end: the human summary on stdout, or with as_json the JSON report on stdout
  and the summary on stderr."""
  import json  # pylint: disable=import-outside-toplevel
  if as_json:
    print(json.dumps(report, indent=1), flush=True)
    sys.stderr.write(summary + "\n")
  else:
    print(summary, flush=True)


def export_and_family(root_dir: Optional[str], export_dir: Optional[str],
                      family: Optional[str]) -> tuple:
  """(export_dir, family) from --root_dir (family from its run.json) or --export_dir + --family."""
  import json  # pylint: disable=import-outside-toplevel
  if bool(root_dir) == bool(export_dir):
    raise UsageError("give either --root_dir (a run's directory) or --export_dir with --family")
  if root_dir:
    run_file = os.path.join(root_dir, "run.json")
    if not os.path.isfile(run_file):
      raise UsageError(f"{root_dir} is not a run directory (no run.json)")
    try:
      with open(run_file) as f:
        stored = json.load(f)["family"]
    except (ValueError, KeyError) as e:
      raise UsageError(f"{run_file} is unreadable or has no 'family': {e}") from e
    if family and family != stored:
      raise UsageError(f"--family={family} but {root_dir} is a run of {stored}")
    return os.path.abspath(os.path.join(root_dir, "export")), stored
  if not family:
    raise UsageError("--export_dir needs --family (or give --root_dir instead)")
  return os.path.abspath(export_dir), family
