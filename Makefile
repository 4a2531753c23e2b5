# Set-up and entry points. Everything installs into a git-ignored virtualenv at .venv,
# re-used while setup.cfg and this Makefile are unchanged.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PINS := torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0

.PHONY: install test demo demo-ablation bench clean-venv

$(STAMP): setup.cfg pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -ra --doctest-modules tests speechbrain_cavmae

demo: $(STAMP)
	$(PY) recipes/Demo/demo.py --out results/demo --data_dir data/toy_demo

demo-ablation: $(STAMP)
	$(PY) recipes/Demo/demo.py --ablation --out results/demo_ablation --data_dir data/toy_demo

bench: $(STAMP)
	$(PY) -m benchmarks.run

clean-venv:
	rm -rf $(VENV)
