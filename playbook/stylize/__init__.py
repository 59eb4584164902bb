"""Style transfer (Gatys et al.): losses on frozen VGG features, optax over the pixels, colour."""
