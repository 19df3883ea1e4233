"""The README's promises: every ```python block runs, and every relative link resolves.

Each ```python block of README.md runs as a script in a fresh process, in a directory where
`runs/my_run` is a real run (`scripts/train.py --gin_file=gin/smoke.gin`), so a block that
reads a run says `root = "runs/my_run"` and runs exactly as a user would run it. A block
whose first line says "without mier_tf" runs where importing mier_tf fails.
"""
import glob
import os
import re
import subprocess
import sys

import pytest

from conftest import copy_run  # the session's one smoke run, copied per module

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
RUN = "runs/my_run"  # where the README's blocks find a run, relative to where they run
ROOT_LINE = f'root = "{RUN}"'
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
MAX_README_LINES = 260

# Makes `import mier_tf` fail in the block's process, and checks at exit that nothing loaded it.
NO_MIER_TF = '''\
import atexit, sys
class _NoMierTf:
  def find_spec(self, name, path=None, target=None):
    if name == "mier_tf" or name.startswith("mier_tf."):
      raise ImportError("this README block must run without mier_tf")
sys.meta_path.insert(0, _NoMierTf())
atexit.register(lambda: sys.modules.get("mier_tf") is None or sys.exit("mier_tf was imported"))
'''


def _read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


def python_blocks(text):
  """[(heading above it, code)] for every ```python block of a markdown text."""
  blocks, heading = [], "top"
  lines = text.split("\n")
  i = 0
  while i < len(lines):
    line = lines[i]
    if line.startswith("#"):
      heading = line.lstrip("#").strip()
    if line.strip().startswith("```"):
      fence_info = line.strip()[3:].strip()
      end = i + 1
      while end < len(lines) and not lines[end].strip().startswith("```"):
        end += 1
      if fence_info == "python":
        blocks.append((heading, "\n".join(lines[i + 1:end]) + "\n"))
      i = end
    i += 1
  return blocks


BLOCKS = python_blocks(_read(README))


def _without_mier_tf(code):
  return "without mier_tf" in code.lstrip().split("\n", 1)[0].lower()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, smoke_run_source):
  """A directory holding a smoke run at runs/my_run (the name groups these tests on one
  xdist worker, tests/conftest.py, so the run is copied once)."""
  cwd = tmp_path_factory.mktemp("readme")
  copy_run(smoke_run_source, cwd / RUN)
  return cwd


def test_the_readme_has_python_blocks_and_one_runs_without_mier_tf():
  assert len(BLOCKS) >= 2
  assert any(_without_mier_tf(code) for _, code in BLOCKS)


@pytest.mark.parametrize("heading,code", BLOCKS, ids=[h for h, _ in BLOCKS])
def test_readme_python_block_runs(run_dir, heading, code):
  if "root" in code:  # a block that reads a run names it the one way the test provides
    assert ROOT_LINE in code, f"{heading!r}: read the run through {ROOT_LINE}"
  script = run_dir / (re.sub(r"\W+", "_", heading).strip("_").lower() + ".py")
  script.write_text((NO_MIER_TF if _without_mier_tf(code) else "") + code)
  proc = subprocess.run([sys.executable, str(script)], cwd=run_dir, env=ENV,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, (f"README block under {heading!r} failed:\n"
                                f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def test_a_block_without_mier_tf_cannot_import_it(tmp_path):
  script = tmp_path / "block.py"
  script.write_text(NO_MIER_TF + "from mier_tf import plotting\n")
  proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=ENV,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0 and "must run without mier_tf" in proc.stderr


# --- Links ----------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def anchors(path):
  """GitHub's anchors of a markdown file's headings (inline code keeps its text)."""
  seen, result = {}, set()
  in_fence = False
  for line in _read(path).split("\n"):
    if line.strip().startswith("```"):
      in_fence = not in_fence
      continue
    match = None if in_fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
    if not match:
      continue
    slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    result.add(slug if count == 0 else f"{slug}-{count}")
  return result


def relative_links(path):
  text = _read(path)
  text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
  return [t for t in LINK.findall(text) if not re.match(r"^[a-z]+:", t)]


DOCS = ["README.md", "CHANGELOG.md"] + sorted(
    os.path.join("docs", n) for n in os.listdir(os.path.join(REPO, "docs")) if n.endswith(".md"))


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_points_at_a_file_and_heading_that_exist(doc):
  path = os.path.join(REPO, doc)
  broken = []
  for target in relative_links(path):
    file_part, _, anchor = target.partition("#")
    linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
    if not os.path.exists(linked):
      broken.append(f"{target}: no such file")
    elif anchor and linked.endswith(".md") and anchor not in anchors(linked):
      broken.append(f"{target}: no heading with anchor #{anchor} in {os.path.relpath(linked, REPO)}")
  assert not broken, f"{doc}: " + "; ".join(broken)


def test_readme_is_a_guide_not_a_lab_notebook():
  text = _read(README)
  assert len(text.split("\n")) <= MAX_README_LINES, (
      "README.md is a user guide: move measurements and their history to docs/")
  dates = re.findall(r"\b20\d\d-\d\d-\d\d\b", text)
  assert not dates, f"README.md holds dated measurements {dates}: they belong in docs/"


# --- Tables quoted from the results ---------------------------------------------------------

TABLES = sorted(glob.glob(os.path.join(REPO, "docs", "results", "*", "*.md")))


@pytest.mark.parametrize("table", [os.path.relpath(t, REPO) for t in TABLES])
def test_a_results_table_quoted_in_the_docs_is_quoted_whole_and_current(table):
  """A table `make results` wrote (docs/results/<family>/*.md) that a doc quotes, recognised
  by its header and first row, must be quoted as it is now: no stale copy of old numbers."""
  for block in _read(os.path.join(REPO, table)).strip().split("\n\n"):
    lines = block.strip().split("\n")
    if not lines[0].startswith("|") or len(lines) < 3:
      continue
    for doc in DOCS:
      text = _read(os.path.join(REPO, doc))
      start = text.find("\n".join(lines[:3]) + "\n")
      if start >= 0:
        quoted = text[start:].split("\n\n")[0].strip()
        assert quoted == block.strip(), (
            f"{doc} quotes a table of {table} that has changed since: paste it again")
