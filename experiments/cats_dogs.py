"""Cats vs dogs (Google's cats_and_dogs_filtered: train 2,000, validation 1,000) by transfer
learning from an ImageNet backbone, with a new two-class head trained through the common trainer.

    python -m launch.main --config=experiments/cats_dogs.py --workdir=runs/cats_dogs_vgg16 \
        --config.backbone=vgg16 --config.mode=frozen
    python -m launch.main --config=experiments/cats_dogs.py --workdir=runs/cats_dogs_lite0 \
        --config.backbone=efficientnet_lite0 --config.mode=frozen

``frozen`` trains a head on cached backbone features (mirror images as augmentation);
``finetune`` trains the backbone's top blocks with the head (``playbook/tasks/transfer.py``).
The 1,000 validation images are the test set, evaluated once on the best checkpoint.
Seed (Keras VGG16, new classifier): 94 %. Bars: VGG16 frozen >= 95 %, EfficientNet-Lite0
>= 97 %. Results: the README's results table (``python -m launch.report``).
"""

from playbook.tasks import config_arg, transfer


def get_config(arg: str = ""):
  arg = config_arg(arg, "quick")
  config = transfer.base_config("cats_dogs")
  config.backbone = "vgg16"      # vgg16 | efficientnet_lite0
  config.mode = "frozen"         # frozen | finetune
  return transfer.quick(config) if arg == "quick" else config
