#!/usr/bin/env bash
# Training on a Cloud TPU VM pod slice (several hosts): the same launch.main on every host.
#
#   export TPU_NAME=my-v4-32 ZONE=us-central2-b           # an existing TPU VM slice
#   launch/tpu_pod.sh setup                                # copy the repo, install, on all hosts
#   launch/tpu_pod.sh run experiments/mnist_mlp.py /mnt/shared/runs/mnist_mlp [--config.K=V ...]
#
# `setup` copies this repository to ~/playbook on every host of the slice and installs
# requirements.txt plus TPU JAX there. `run` starts `python -m launch.main --distributed=on` on
# every host at once (gcloud ... ssh --worker=all); jax.distributed.initialize() then finds the
# coordinator, the number of hosts and this host's id from the TPU metadata, and every TPU chip
# of the slice is one device of the mesh.
#
# Requirements:
#   * the data at the same path on every host: PLAYBOOK_DATA_DIR (default ~/data; e.g. copy it
#     with `gcloud compute tpus tpu-vm scp --recurse DATA $TPU_NAME:~/data --worker=all`);
#   * WORKDIR on a filesystem every host mounts at the same path (e.g. a Filestore NFS share):
#     every host writes its own shards of the orbax checkpoints; host 0 writes the rest.
#
# config.train.batch_size is the GLOBAL batch, split over every chip; see launch/slurm.sbatch for
# learning-rate scaling and --config.parallel.fsdp.

set -euo pipefail

: "${TPU_NAME:?export TPU_NAME (the TPU VM slice)}"
: "${ZONE:?export ZONE (where the slice is)}"
PROJECT_FLAG=${PROJECT:+--project=$PROJECT}
REMOTE_DIR=${REMOTE_DIR:-playbook}
JAX_VERSION=${JAX_VERSION:-0.10.2}  # Keep equal to requirements.txt.

on_all_hosts() {
  # shellcheck disable=SC2086
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" $PROJECT_FLAG --worker=all \
    --command="$1"
}

case "${1:-}" in
  setup)
    repo=$(cd "$(dirname "$0")/.." && pwd)
    tmp=$(mktemp -d)
    git -C "$repo" ls-files -z | tar -C "$repo" --null -T - -czf "$tmp/playbook.tgz"
    # shellcheck disable=SC2086
    gcloud compute tpus tpu-vm scp "$tmp/playbook.tgz" "$TPU_NAME:~/" --zone="$ZONE" \
      $PROJECT_FLAG --worker=all
    on_all_hosts "set -e; mkdir -p ~/$REMOTE_DIR && tar -xzf ~/playbook.tgz -C ~/$REMOTE_DIR \
      && cd ~/$REMOTE_DIR && python3 -m venv .venv && .venv/bin/pip install -q -U pip \
      && .venv/bin/pip install -q -r requirements.txt 'jax[tpu]==$JAX_VERSION'"
    rm -rf "$tmp"
    ;;
  run)
    config=${2:?usage: launch/tpu_pod.sh run CONFIG WORKDIR [--config.KEY=VALUE ...]}
    workdir=${3:?usage: launch/tpu_pod.sh run CONFIG WORKDIR [--config.KEY=VALUE ...]}
    shift 3
    extra=""
    if (($#)); then extra=$(printf ' %q' "$@"); fi
    data_dir=${PLAYBOOK_DATA_DIR:-'~/data'}
    # Every host runs the same command; only host 0 prints the result line and writes results.
    on_all_hosts "cd ~/$REMOTE_DIR && PLAYBOOK_DATA_DIR=$data_dir \
      PLAYBOOK_JAX_CACHE=$workdir/.jax_cache .venv/bin/python -m launch.main \
      --config=$config --workdir=$workdir --distributed=on --noprogress$extra"
    ;;
  *)
    echo "usage: TPU_NAME=... ZONE=... $0 setup | run CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2
    exit 2
    ;;
esac
