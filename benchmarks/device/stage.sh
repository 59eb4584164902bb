#!/bin/bash
# Stages what the device machine needs into two git-ignored folders that `carry` sends along:
# .whl/ (the pinned pure-Python packages its image lacks or holds at other versions) and
# .devdata/ (anna.txt, and the CIFAR-10 JPEG copy packed into one file: 60,000 small files would
# not fit the transfer), and .devmnist/ (MNIST, for gpu_mnist.sh: with .devdata it would pass the
# transfer's 64 MiB, so it travels in a call of its own). Run from the repo root with
# PLAYBOOK_DATA_DIR set.
set -eu
D=${PLAYBOOK_DATA_DIR:?set PLAYBOOK_DATA_DIR}
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.devdata/' .git/info/exclude || echo '/.devdata/' >> .git/info/exclude
grep -qx '/.devmnist/' .git/info/exclude || echo '/.devmnist/' >> .git/info/exclude
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d .whl ml_collections==1.1.0 flax==0.12.8 optax==0.2.8 \
  orbax-checkpoint==0.11.36
mkdir -p .devdata/data/text && cp "$D/text/anna.txt" .devdata/data/text/
cp "$D/cifar10/SOURCE.md" .devdata/SOURCE_cifar10.md
python benchmarks/device/pack_cifar.py "$D/cifar10" .devdata
mkdir -p .devmnist && cp -r "$D/mnist" .devmnist/ && chmod -R u+w .devmnist
du -sh --apparent-size .devdata .devmnist .whl
