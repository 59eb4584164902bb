"""Character-level LSTM on Anna Karenina: 2 layers x 512, dropout 0.5, sequences of 100.

    python -m launch.main --config=experiments/char_lstm.py --workdir=runs/char_lstm
    python -m launch.sample --workdir=runs/char_lstm --prime="Anna" --length=1000 \
        --temperature=0.8 --top_k=5 --seed=0

Seed notebook (same network, Adam 1e-3 constant, clip 5, 20 epochs, batch 128): validation loss
1.2952 nats/char (the course's best: 1.2917). Bar: <= 1.25 nats/char. Result: 1.2360 nats/char
at epoch 30 on one NVIDIA H200 (71 s); about 3.2 h on a 2-core CPU. `:quick` is a seconds-long
variant on the first 100k characters. Any UTF-8 text trains with --config.data.path=FILE.
"""

from playbook.tasks import char_lm, config_arg


def get_config(arg: str = ""):
  arg = config_arg(arg, "quick")
  config = char_lm.base_config("char_lstm")
  return char_lm.quick(config) if arg == "quick" else config
