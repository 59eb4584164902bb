"""Pretrained weights: located on disk, read without executing code, verified by a tensor hash.

``load_vgg`` gives the ImageNet VGG params, ``load_efficientnet_lite0`` the Lite0 variables; ``locate`` says where files are looked for.
"""

from playbook.weights.efficientnet import load_efficientnet_lite0
from playbook.weights.hashing import tensor_sha256
from playbook.weights.keras_h5 import read_keras_h5
from playbook.weights.locate import locate, search_dirs, verify_tensors
from playbook.weights.torch_pth import read_torch_pth
from playbook.weights.vgg import load_vgg

__all__ = ["tensor_sha256", "read_keras_h5", "read_torch_pth", "locate", "search_dirs",
           "verify_tensors", "load_vgg", "load_efficientnet_lite0"]
