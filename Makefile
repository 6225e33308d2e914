# Two commands, each doing its own set-up from a clean clone:
#   make demo   create .venv, install torch (CPU wheel) and the package, run the demo
#   make test   the same set-up with the `test` extra (which includes the `app` extra, Gradio, and playwright:
#               tests/test_app.py serves the web app and drives it in Debian's chromium, which .ci/run installs)
#               and transformers' common tests (downloaded once from PyPI into .cache/upstream-tests/), then
#               the test suite
#   make space  write build/space, a Hugging Face Space folder running the web app (spaces/build_space.py)
# Users who bring their own torch (e.g. a CUDA build) keep it: torch is only installed
# when `import torch` fails in the environment.

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PYTEST_ARGS ?=

.PHONY: demo test install install-test upstream-tests space clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "torch==$(TORCH_VERSION)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.torch
	$(PIP) install -e ".[test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# transformers' ModelTesterMixin / ConfigTester for the installed version (tests/upstream/; docs/conformance.md)
upstream-tests: install-test
	$(PY) tests/upstream/fetch_upstream_tests.py

demo: install
	$(VENV)/bin/hf-textimg demo --out outputs/demo

test: install-test upstream-tests
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

# The web app as a Space: push with `hf upload --repo-type space ORG/NAME build/space .`
space: install-test
	rm -rf build/space
	$(PY) spaces/build_space.py build/space

clean:
	rm -rf $(VENV) outputs .pytest_cache .cache/upstream-tests build/space
