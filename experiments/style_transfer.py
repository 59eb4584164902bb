"""Neural style transfer (Gatys, Ecker, Bethge, CVPR 2016): Tuebingen in the style of The Starry
Night, VGG16 features, L-BFGS over the pixels, coarse to fine 256 -> 512.

    python -m launch.main --config=experiments/style_transfer.py --workdir=runs/style_tubingen \
        [--config.style=style/the_scream.jpg] [--config.colors=luminance]

Image paths are relative to the data root (or absolute). Writes result.png,
plots/side_by_side.png, plots/loss.png, progress.gif, metrics.jsonl and results.json under the
workdir. The same code is behind ``python -m launch.stylize`` (one pair of files, no workdir).
``:quick`` (48 -> 64 px, 5 + 5 steps) is what the tests run.
"""

from playbook.tasks import config_arg, stylize


def get_config(arg: str = ""):
  arg = config_arg(arg, "quick")
  config = stylize.base_config("style_transfer")
  config.sizes = (256, 512)
  config.steps = (150, 100)
  config.gif_every = 10
  return stylize.quick(config) if arg == "quick" else config
