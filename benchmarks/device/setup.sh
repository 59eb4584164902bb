# Sourced by gpu_checks.sh and gpu_sweep.sh (repo root, device machine): the carried wheels,
# the data and cache locations, the run folder $W, and the CIFAR folder's SOURCE.md. QUICK=1
# skips the wheels (a CPU dry run in a venv that has them); PY picks the interpreter.
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
if [ -z "${QUICK:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PLAYBOOK_DATA_DIR=$PWD/.devdata/data PLAYBOOK_CACHE_DIR=/tmp/pbcache \
  PLAYBOOK_JAX_CACHE=/tmp/pbcache/jax
W=/tmp/gpu_runs; rm -rf $W; mkdir -p $W
mkdir -p .devdata/data/cifar10 && cp .devdata/SOURCE_cifar10.md .devdata/data/cifar10/SOURCE.md
