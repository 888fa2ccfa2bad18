# make demo:     set up .venv and run the main job on a built-in photograph.
# make test:     set up .venv and run the fast tests, -m "not slow" (what CI runs: .ci/run).
# make test-all: set up .venv and run every test, the slow ones included.
# make setup-aimet / test-aimet: the optional AIMET quantizer in its own .venv-aimet (torch 2.14.1), never touching .venv.
VENV ?= .venv
AIMET_VENV ?= .venv-aimet
PY := $(VENV)/bin/python

.PHONY: setup demo test test-all setup-aimet test-aimet clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) EXTRAS=test,plot,shapes,codecs ./scripts/bootstrap.sh
	touch $@

demo: setup
	$(PY) examples/quickstart.py

test: setup
	$(PY) -m pytest -q -m "not slow"

test-all: setup
	$(PY) -m pytest -q

setup-aimet: $(AIMET_VENV)/.installed

$(AIMET_VENV)/.installed: pyproject.toml scripts/setup_aimet.sh
	AIMET_VENV=$(AIMET_VENV) ./scripts/setup_aimet.sh
	touch $@

test-aimet: setup-aimet
	$(AIMET_VENV)/bin/python -m pytest -q -m aimet tests/test_aimet.py

clean:
	rm -rf demo_output .pytest_cache
