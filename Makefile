# make demo:     set up .venv and run the main job on a built-in photograph.
# make test:     set up .venv and run the fast tests, -m "not slow" (what CI runs: .ci/run).
# make test-all: set up .venv and run every test, the slow ones included.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-all clean

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

clean:
	rm -rf demo_output .pytest_cache
