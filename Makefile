# The README's two commands: `make demo` and `make test`.
# Both create .venv in the checkout and install into it when missing
# (a stamp file makes the second run instant), then do their job.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export DS_ACCELERATOR := cpu
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: venv test demo clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check torch==2.13.0
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS) tests

demo: $(STAMP)
	$(VENV)/bin/slt-llm demo

clean:
	rm -rf runs/demo
