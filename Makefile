# The two commands of mier_tf: `make train` and `make test` (plus `make venv`, `make bench`).
# The venv is (re)built whenever requirements.txt or setup.py is newer than it.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYTHONWARNINGS ?= ignore::DeprecationWarning

.PHONY: venv train test bench bench-learning results clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "mier_tf needs Python 3.11 (TensorFlow 2.15 and dm-reverb 0.14 have no wheels for other versions): '$(PYTHON)' was not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'." >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || { echo "mier_tf needs Python 3.11, but '$(PYTHON)' is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); run 'make PYTHON=/path/to/python3.11'." >&2; exit 1; }
	@if [ -x $(VENV)/bin/python ] && ! $(VENV)/bin/python -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then rm -rf $(VENV); fi
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

train: venv
	$(VENV)/bin/python scripts/train.py --gin_file=gin/quickstart.gin

test: venv
	$(VENV)/bin/python -m pytest

bench: venv
	$(VENV)/bin/python scripts/benchmark.py

# Returns per environment step and per CPU minute (about 45 minutes on 2 cores).
bench-learning: venv
	$(VENV)/bin/python scripts/benchmark_learning.py --out=runs/bench_learning

# Every table and figure of docs/RESULTS.md, from the saved runs in docs/results (seconds).
results: venv
	$(VENV)/bin/python scripts/regenerate_results.py

clean:
	rm -rf $(VENV) runs .pytest_cache
