# One command to set up and run the default study, one to run the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/mnist_mlp

.PHONY: setup run test bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

# The default study: the MNIST MLP, five seeds trained at once with jax.vmap.
run: setup
	$(PY) -m launch.main --config=experiments/mnist_mlp.py --workdir=$(WORKDIR) --config.num_seeds=5

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q --durations=25 tests

bench: $(VENV)/.installed-dev
	$(PY) -m benchmarks.train_throughput

clean:
	rm -rf $(VENV) .pytest_cache
