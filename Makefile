# One command to set up and run the default study, one to run the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/mnist_mlp
# Accelerator for JAX: empty (CPU, the default), cuda12, cuda13 or tpu: `make run ACCEL=cuda12`.
# Installs jax[<ACCEL>] at the pinned jax version after requirements.txt; TensorFlow stays CPU-only
# (tensorflow-cpu). A venv keeps what it got: `make clean` before going back to CPU.
ACCEL ?=
JAX_VERSION := $(shell sed -n 's/^jax==\([^ ;#]*\).*/\1/p' requirements.txt)
ifneq ($(ACCEL),)
ifeq ($(filter $(ACCEL),cuda12 cuda13 tpu),)
$(error ACCEL=$(ACCEL) is not known: use ACCEL=cuda12, cuda13 or tpu, or leave it out for CPU)
endif
ACCEL_STAMP := $(VENV)/.accel-$(ACCEL)
endif

.PHONY: setup run test bench clean
.PRECIOUS: $(VENV)/.accel-%

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -r requirements-dev.txt
	touch $@

$(VENV)/.accel-%: $(VENV)/.installed
	$(PY) -m pip install "jax[$*]==$(JAX_VERSION)"
	touch $@

setup: $(VENV)/.installed $(ACCEL_STAMP)

# The default study: the MNIST MLP, five seeds trained at once with jax.vmap.
run: setup
	$(PY) -m launch.main --config=experiments/mnist_mlp.py --workdir=$(WORKDIR) --config.num_seeds=5

test: $(VENV)/.installed-dev $(ACCEL_STAMP)
	$(PY) -m pytest -q --durations=25 tests

bench: $(VENV)/.installed-dev $(ACCEL_STAMP)
	$(PY) -m benchmarks.train_throughput

clean:
	rm -rf $(VENV) .pytest_cache
