"""Fashion-MNIST with an MLP: 784-1024-1024-10, ReLU, dropout 0.2.

    python -m launch.main --config=experiments/fashion_mlp.py --workdir=runs/fashion_mlp \
        --config.num_seeds=3

Seed notebook (784-256-128-64-10): 85.7 % test accuracy; the Fashion-MNIST README's table of
submitted results: 90.0 % for a 256-128-64 MLP. Bar: >= 90.5 %. Result here: see the README's
results table.

The recipe came from sweeps in one program; their plots are docs/img/fashion_mlp/sweep_*.png:

    python -m launch.main --config=experiments/fashion_mlp.py \
        --workdir=runs/fashion_mlp_seed_net_sweep '--config.model.hidden=(256,128,64)' \
        --config.sweep.dropout=0,0.2 \
        --config.sweep.learning_rate=0.0003,0.001,0.003 --config.sweep.weight_decay=0,0.2
    python -m launch.main --config=experiments/fashion_mlp.py --workdir=runs/fashion_mlp_wd_sweep \
        --config.sweep.weight_decay=0.05,0.2 --config.optim.label_smoothing=0
    python -m launch.main --config=experiments/fashion_mlp.py --workdir=runs/fashion_mlp_ls_sweep \
        --config.sweep.label_smoothing=0,0.05,0.1
"""

from playbook.tasks import classify, config_arg


def get_config(arg: str = ""):
  arg = config_arg(arg, "quick")
  # The seed notebook's 256-128-64 reaches 89.2-90.1 % test with dropout 0.2 and 90.1-90.9 %
  # without (the seed-net sweep, one seed each); two layers of 1024 with dropout 0.2 reach 91.1 %.
  config = classify.base_config(study="fashion_mlp", data="fashion_mnist",
                                hidden=(1024, 1024), dropout=0.2)
  config.optim.learning_rate = 1e-3
  config.optim.weight_decay = 0.2
  # The label smoothing sweep's values lie within a third of a point, seed noise; validation
  # picks 0.05, which also bounds the logits for the exports' float32 parity (docs/export.md).
  config.optim.label_smoothing = 0.05
  # Mirrored clothes are still clothes; shifts by one pixel.
  config.augment.max_shift = 1
  config.augment.flip_lr = True
  config.train.num_epochs = 100
  return classify.quick(config) if arg == "quick" else config
