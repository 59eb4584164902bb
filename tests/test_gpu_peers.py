"""benchmarks/gpu_peers.py's parts that run without a GPU: the PyTorch LSTM peer and its timing."""

from __future__ import annotations

import math

import pytest

from benchmarks import gpu_peers


def test_steady_seconds_puts_the_first_epoch_at_the_later_pace():
  # Epoch 1 took 10 s (compilation), the next three 2 s each: four epochs at 2 s.
  assert gpu_peers.steady_seconds([10.0, 12.0, 14.0, 16.0]) == pytest.approx(8.0)
  assert gpu_peers.steady_seconds([10.0]) is None


def test_torch_lstm_peer_trains_on_our_streams(anna_path):
  pytest.importorskip("torch")
  peer = gpu_peers.lstm_peer(quick=True, deadline=math.inf)
  assert peer["epochs_run"] == peer["epochs"] == 2
  cumulative = peer["train_seconds_per_epoch_cumulative"]
  assert len(cumulative) == 2 and 0 < cumulative[0] < cumulative[1]
  # From ln(vocabulary) ~ 4.3 nats/char untrained to well under it after two quick epochs.
  first, best = peer["history"][0]["val_nats_per_char"], peer["best_val_nats_per_char"]
  assert best <= first < 4.0
