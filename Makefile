# neuronviz: the two commands a fresh machine needs are `make run` and `make test`.
# Both start with `make setup`, which creates .venv if missing, (re)installs the pinned
# requirements and then the project itself (editable: `pip install --no-deps -e .`, so
# `import neuronviz` works from any folder and `.venv/bin/neuronviz` exists) only when
# requirements*.txt or pyproject.toml changed, or the project is not installed (a content hash is
# kept in .venv).

PYTHON_BOOTSTRAP ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.sha256
PORT ?= 8501
# The rest of the server settings live in .streamlit/config.toml (read from the repository root).
STREAMLIT_FLAGS := --server.port $(PORT)
EMBEDDED := digits-cnn digits-resnet digits-cnn-robust digits-cnn-sns digits-vit
REGENERATORS := $(addprefix pssr-,$(EMBEDDED))

.PHONY: setup run test test-fast test-nobrowser lint browser models bench clean

setup:
	@test -x $(PYTHON) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	@want=$$(cat requirements.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -d' ' -f1); \
	if [ "$$(cat $(STAMP) 2>/dev/null)" = "$$want" ] && [ -x $(VENV)/bin/neuronviz ]; then \
		echo "setup: requirements and project unchanged, nothing to install"; \
	else \
		set -e; \
		$(PYTHON) -m pip install --quiet --upgrade pip; \
		$(PYTHON) -m pip install --quiet -r requirements.txt; \
		$(PYTHON) -m pip install --quiet --no-deps -r requirements-nodeps.txt; \
		$(PYTHON) -m pip install --quiet --no-deps -e .; \
		echo "$$want" > $(STAMP); \
		echo "setup: installed the pinned requirements and neuronviz (editable) into $(VENV)"; \
	fi

# app.serve is `streamlit run app/main.py` (same options) that imports torch & co. in the background
# once the server is up, so the first page arrives sooner (app/warmup.py).
run: setup
	$(PYTHON) -m app.serve $(STREAMLIT_FLAGS)

test: setup
	$(PYTHON) -m pytest

# Types and lint of the library and the dashboard (CI runs it before the tests).
lint: setup
	$(PYTHON) -m mypy neuronviz app
	$(PYTHON) -m ruff check neuronviz app tests bench

# The edit–test loop (a few minutes on 2 cores): unit tests of the core modules and every page once
# in AppTest on the default model. Which tests: FAST_MODULES and @pytest.mark.fast (tests/conftest.py).
test-fast: setup
	$(PYTHON) -m pytest -m "fast and not slow and not e2e" -q

# Everything but the browser tests (no chromium needed).
test-nobrowser: setup
	$(PYTHON) -m pytest -m "not e2e"

# Debian's chromium (end-to-end browser tests, static figure export through kaleido) and
# poppler-utils (the export tests read PDFs with pdfinfo/pdffonts); needs root.
browser:
	@{ command -v chromium && command -v pdffonts; } >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium poppler-utils; }

# Retrain every embedded model from its recipe, then their PSSR regenerators
# (writes assets/models/*.safetensors + *.json; the SNS model fine-tunes digits-cnn).
models: setup
	for name in $(EMBEDDED) $(REGENERATORS); do $(PYTHON) -m neuronviz -v train $$name || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache out
