"""The char-LSTM: data and streams, the scan cell, carried state, sampling, memorising a text."""

from __future__ import annotations

import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import ROOT
from playbook.tasks import char_lm
from playbook.data import DataError
from playbook.data import text as text_data
from playbook.models.lstm import CharLSTM, zero_carry
from playbook.train import loop, steps

V, H, LAYERS, B, T = 7, 16, 2, 3, 12
MODEL = CharLSTM(vocab_size=V, hidden=H, num_layers=LAYERS, dropout=0.0)
TOKENS = np.random.default_rng(0).integers(0, V, (B, T)).astype(np.int32)


def init_params(model=MODEL, seed=0):
  return char_lm.make_init_fn(model, B, T)(jax.random.PRNGKey(seed))[0]


def reference_lstm(params, tokens):
  """The textbook LSTM, one time step and one layer at a time, in float64 numpy."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  sigmoid = lambda z: 1 / (1 + np.exp(-z))
  h, c = np.zeros((LAYERS, B, H)), np.zeros((LAYERS, B, H))
  logits = np.zeros((B, T, V))
  for t in range(T):
    x = np.eye(V)[tokens[:, t]]  # One-hot input.
    for layer in range(LAYERS):
      z = x @ p[f"w_x_{layer}"] + h[layer] @ p[f"w_h_{layer}"] + p[f"b_{layer}"]
      i, f, g, o = np.split(z, 4, axis=-1)
      c[layer] = sigmoid(f) * c[layer] + sigmoid(i) * np.tanh(g)
      h[layer] = sigmoid(o) * np.tanh(c[layer])
      x = h[layer]
    logits[:, t] = x @ p["fc"]["kernel"] + p["fc"]["bias"]
  return logits, h, c


def test_scan_lstm_equals_step_by_step_loop():
  params = init_params()
  logits, (h, c) = MODEL.apply({"params": params}, TOKENS, zero_carry(LAYERS, B, H), train=False)
  ref_logits, ref_h, ref_c = reference_lstm(params, TOKENS)
  np.testing.assert_allclose(logits, ref_logits, atol=1e-5)
  np.testing.assert_allclose(h, ref_h, atol=1e-5)
  np.testing.assert_allclose(c, ref_c, atol=1e-5)


@pytest.mark.parametrize("unroll", [1, 4])
def test_carried_state_over_two_halves_equals_one_full_sequence(unroll):
  model = CharLSTM(vocab_size=V, hidden=H, num_layers=LAYERS, dropout=0.0, unroll=unroll)
  params = {"params": init_params(model)}
  carry = zero_carry(LAYERS, B, H)
  full, full_carry = model.apply(params, TOKENS, carry, train=False)
  first, mid = model.apply(params, TOKENS[:, :T // 2], carry, train=False)
  second, end = model.apply(params, TOKENS[:, T // 2:], mid, train=False)
  np.testing.assert_allclose(np.concatenate([first, second], 1), full, atol=1e-5)
  np.testing.assert_allclose(end[0], full_carry[0], atol=1e-5)


def test_one_step_function_continues_the_sequence():
  params = {"params": init_params()}
  logits, carry = MODEL.apply(params, TOKENS[:, :-1], zero_carry(LAYERS, B, H), train=False)
  step_logits, _ = MODEL.apply(params, TOKENS[:, -1], carry, method=CharLSTM.step)
  full, _ = MODEL.apply(params, TOKENS, zero_carry(LAYERS, B, H), train=False)
  np.testing.assert_allclose(step_logits, full[:, -1], atol=1e-5)


def test_stream_batches_continue_each_stream_and_shift_targets():
  ids = np.arange(1 + 2 * 3 * 4)  # 2 streams x (3 windows of 4) + 1.
  batches = text_data.stream_batches(ids, batch_size=2, seq_len=4)
  inputs = batches["inputs"].reshape(3, 2, 4)  # (batch, stream, time)
  np.testing.assert_array_equal(inputs[:, 0].ravel(), np.arange(12))       # stream 0
  np.testing.assert_array_equal(inputs[:, 1].ravel(), np.arange(12, 24))   # stream 1
  np.testing.assert_array_equal(batches["targets"], batches["inputs"] + 1)


def test_in_order_epoch_batches_keep_the_stream_layout():
  batches = np.asarray(steps.epoch_batches(jax.random.PRNGKey(0), 10, 3, shuffle=False))
  np.testing.assert_array_equal(batches, np.arange(9).reshape(3, 3))


def test_carried_eval_equals_the_loss_of_whole_streams():
  """eval_epoch(carry_state=True) over 3 windows per stream = one pass over the whole streams."""
  params = init_params()
  ids = np.random.default_rng(1).integers(0, V, 1 + B * 3 * 4).astype(np.int32)
  batches = text_data.stream_batches(ids, batch_size=B, seq_len=4)
  init_fn = lambda rng: (params, char_lm.make_init_fn(MODEL, B, 4)(rng)[1])
  state = loop.init_states(init_fn, optax.sgd(0.1), seed=0, num_seeds=1)
  state = state.replace(model_state=jax.tree.map(lambda a: a + 1.0, state.model_state))  # Ignored.
  evaluate = lambda carry: loop.evaluate(state, batches, loss_fn=char_lm.lm_loss(MODEL),
                                         batch_size=B, num_seeds=1, carry_state=carry)
  metrics = evaluate(True)
  streams = ids[:B * 12].reshape(B, 12)
  targets = ids[1:B * 12 + 1].reshape(B, 12)
  logits, _ = MODEL.apply({"params": params}, streams, zero_carry(LAYERS, B, H), train=False)
  log_probs = jax.nn.log_softmax(logits)
  xent = -np.take_along_axis(np.asarray(log_probs), targets[..., None], -1).mean()
  np.testing.assert_allclose(metrics["xent"], xent, rtol=1e-5)
  assert abs(float(evaluate(False)["xent"]) - xent) > 1e-3  # Without the carry: another number.


def test_sampling_is_reproducible_for_a_seed_and_differs_across_seeds():
  params = init_params()
  vocab = text_data.CharVocab(list("abcdefg"))
  sample = lambda seed: char_lm.generate(MODEL, params, vocab, prime="abc", length=60,
                                         temperature=1.0, top_k=0, seed=seed)
  first = sample(0)
  assert first.startswith("abc") and len(first) == 63
  assert sample(0) == first
  assert sample(1) != first


def test_top_k_sampling_only_draws_the_k_likeliest():
  logits = jnp.array([0.0, 5.0, 1.0, 4.0, -2.0])
  draws = {int(char_lm.sample_token(jax.random.PRNGKey(i), logits, 1.0, 2)) for i in range(50)}
  assert draws == {1, 3}


def test_prime_outside_the_vocabulary_names_the_characters():
  vocab = text_data.CharVocab(list("abcdefg"))
  with pytest.raises(text_data.VocabError, match=r"'z', 'é'"):
    char_lm.generate(MODEL, init_params(), vocab, prime="abzé", length=5, temperature=1.0,
                     top_k=0, seed=0)


def test_read_text_errors_name_the_file(tmp_path):
  with pytest.raises(DataError, match="Missing text file"):
    text_data.read_text(tmp_path / "nope.txt")
  (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
  with pytest.raises(DataError, match="latin1.txt is not UTF-8"):
    text_data.read_text(tmp_path / "latin1.txt")


def test_read_text_turns_crlf_into_lf(tmp_path):
  (tmp_path / "crlf.txt").write_bytes(b"one\r\ntwo\r\n")
  assert text_data.read_text(tmp_path / "crlf.txt") == "one\ntwo\n"


def test_anna_is_83_symbols_in_text_mode(anna_path):
  cfg = ml_collections.ConfigDict(dict(path="", dir=str(anna_path.parents[1])))
  text = text_data.load_text(cfg)
  assert len(text) == 1_985_223
  assert len(text_data.CharVocab.from_text(text)) == 83
  assert text.startswith("Chapter 1\n\n\nHappy families are all alike;")


def test_corrupt_copy_of_anna_fails_its_checksum(anna_path, tmp_path):
  (tmp_path / "text").mkdir()
  copy = tmp_path / "text" / "anna.txt"
  shutil.copyfile(anna_path, copy)
  data = bytearray(copy.read_bytes())
  data[1000] ^= 1
  copy.write_bytes(bytes(data))
  cfg = ml_collections.ConfigDict(dict(path="", dir=str(tmp_path)))
  with pytest.raises(DataError, match="anna.txt is corrupt: sha256"):
    text_data.load_text(cfg)


TINY_TEXT = "the quick brown fox jumps over the lazy dog. " * 300


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """The char_lstm study, end to end, on a tiny repeated text it can learn by heart."""
  tmp = tmp_path_factory.mktemp("tiny")
  (tmp / "tiny.txt").write_text(TINY_TEXT)
  from experiments.char_lstm import get_config
  config = get_config()
  config.progress = False
  config.data.path = str(tmp / "tiny.txt")
  config.data.seq_len = 16
  config.model.update(hidden=64, dropout=0.0)
  config.optim.learning_rate = 1e-2
  config.train.update(batch_size=4, eval_batch_size=4, num_epochs=2)
  config.sample.update(prime="the quick", length=100, temperature=0.5)
  results = char_lm.train(config, tmp / "run")
  return tmp / "run", results


def test_tiny_text_is_memorised(tiny_run):
  workdir, results = tiny_run
  assert results["final_train_nats_per_char"] < 0.05  # 2 x 189 steps, dropout off.
  # Validation also pays for each stream's first characters, which come with no context.
  assert results["best_val_accuracy"] > 0.95
  sample = (workdir / "sample.txt").read_text()
  assert sample.startswith(TINY_TEXT[:100])
  assert (workdir / "plots" / "learning_curve.png").stat().st_size > 0


def test_sample_cli_reads_the_run_back(tiny_run):
  workdir, _ = tiny_run
  cmd = [sys.executable, "-m", "launch.sample", f"--workdir={workdir}", "--prime=the lazy",
         "--length=40", "--temperature=0.5", "--seed=0"]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  assert out.stdout.startswith("the lazy dog. the quick brown fox")


def test_sample_cli_names_a_prime_outside_the_vocabulary(tiny_run):
  workdir, _ = tiny_run
  with pytest.raises(text_data.VocabError, match="'E', 'H', 'T'"):
    model, params, vocab = char_lm.load_run(workdir)
    char_lm.generate(model, params, vocab, prime="THE", length=5, temperature=1.0, top_k=0,
                     seed=0)


def test_carried_state_needs_one_eval_stream_per_train_stream(tmp_path):
  cfg = ml_collections.ConfigDict(dict(batch_size=4, eval_batch_size=8, num_epochs=1, patience=0,
                                       best_metric="xent", best_mode="min", log_every_steps=1,
                                       shuffle=False, carry_state=True))
  data = text_data.stream_batches(np.arange(200) % V, batch_size=4, seq_len=5)
  with pytest.raises(ValueError, match=r"eval_batch_size \(8\) must equal batch_size \(4\)"):
    loop.fit(init_fn=char_lm.make_init_fn(MODEL, 4, 5), loss_fn=char_lm.lm_loss(MODEL),
             tx=optax.adam(1e-3), train_data=data, val_data=data, cfg=cfg, workdir=tmp_path,
             seed=0, progress=False)


def test_carried_state_flows_across_the_calls_of_a_split_epoch(tmp_path):
  """Truncated BPTT with an epoch split into calls: the carry passes from call to call (and is
  zeroed only at the epoch's start), so the training is exactly that of whole-epoch calls."""
  data = text_data.stream_batches(np.arange(600) % V, batch_size=4, seq_len=5)  # 6 steps/epoch.
  histories = []
  for steps_per_call in (None, 2):
    cfg = ml_collections.ConfigDict(dict(
        batch_size=4, eval_batch_size=4, num_epochs=2, patience=0, best_metric="xent",
        best_mode="min", log_every_steps=1, shuffle=False, carry_state=True,
        steps_per_call=steps_per_call))
    result = loop.fit(init_fn=char_lm.make_init_fn(MODEL, 4, 5), loss_fn=char_lm.lm_loss(MODEL),
                      tx=optax.adam(1e-2), train_data=data, val_data=data, cfg=cfg,
                      workdir=tmp_path / str(steps_per_call), seed=0, progress=False)
    histories.append(result.history)
  assert histories[0] == histories[1]


def test_one_step_function_exports_through_jax2onnx():
  """The reason for lax.scan over nn.RNN: the one-step function converts, and ONNX Runtime agrees."""
  import onnxruntime
  from jax2onnx import to_onnx
  params = {"params": init_params()}
  step = lambda token, h, c: jax.tree.leaves(
      MODEL.apply(params, token, (h, c), method=CharLSTM.step))
  h = np.random.default_rng(0).normal(size=(LAYERS, 1, H)).astype(np.float32)
  inputs = [np.array([3], np.int32), h, 0.5 * h]
  onnx_model = to_onnx(step, [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in inputs])
  session = onnxruntime.InferenceSession(onnx_model.SerializeToString())
  names = [i.name for i in session.get_inputs()]
  outputs = session.run(None, dict(zip(names, inputs)))
  for got, want in zip(outputs, step(*inputs)):
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_text_without_the_default_prime_trains_and_samples_from_its_own_opening(tmp_path):
  """The default prime 'Anna' has a capital A this text never uses: the run still finishes,
  results.json is written, and the sample starts from the text's opening, with a warning."""
  (tmp_path / "lower.txt").write_text(TINY_TEXT[:3000])
  from experiments.char_lstm import get_config
  config = get_config("quick")
  config.progress, config.tensorboard = False, False
  config.data.path, config.data.max_chars = str(tmp_path / "lower.txt"), None
  config.data.seq_len, config.model.hidden = 16, 32
  config.train.update(batch_size=4, eval_batch_size=4, num_epochs=1)
  config.sample.length = 20
  assert config.sample.prime == "Anna"
  with pytest.warns(UserWarning, match=r"sample.prime 'Anna' has characters not in this text "
                                       r"\(\['A'\]\)"):
    results = char_lm.train(config, tmp_path / "run")
  assert (tmp_path / "run" / "results.json").exists() and results["epochs_run"] == 1
  assert (tmp_path / "run" / "sample.txt").read_text().startswith(TINY_TEXT[:4])


def test_a_sweep_variant_is_what_its_own_run_gives(tmp_path):
  """Learning rate x dropout of the char-LSTM in one program: seed 0 of a variant trains as its
  own run would, the carried state zeroed each epoch but each model's dropout rate kept."""
  (tmp_path / "tiny.txt").write_text(TINY_TEXT)
  from experiments.char_lstm import get_config

  def tiny(**overrides):
    config = get_config()
    config.progress, config.tensorboard = False, False
    config.data.path, config.data.seq_len = str(tmp_path / "tiny.txt"), 16
    config.model.update(hidden=32, dropout=0.0)
    config.train.update(batch_size=4, eval_batch_size=4, num_epochs=2)
    config.sample.update(prime="the", length=20)
    config.update_from_flattened_dict(overrides)
    return config

  swept = char_lm.train(tiny(**{"sweep.learning_rate": "0.001,0.01", "sweep.dropout": "0,0.3"}),
                        tmp_path / "sweep")
  assert [v["name"] for v in swept["variants"]] == [
      "dropout=0,learning_rate=0.001", "dropout=0,learning_rate=0.01",
      "dropout=0.3,learning_rate=0.001", "dropout=0.3,learning_rate=0.01"]
  nats = [v["best_val_nats_per_char"]["mean"] for v in swept["variants"]]
  assert len(set(nats)) == 4
  assert swept["best_variant"] == swept["variants"][int(np.argmin(nats))]["name"]
  assert (tmp_path / "sweep" / "plots" / "sweep.png").stat().st_size > 10_000
  alone = char_lm.train(tiny(**{"optim.learning_rate": 0.01, "model.dropout": 0.3}),
                        tmp_path / "alone")
  assert swept["variants"][3]["best_val_nats_per_char"]["per_seed"][0] == pytest.approx(
      alone["best_val_nats_per_char"], abs=1e-4)
