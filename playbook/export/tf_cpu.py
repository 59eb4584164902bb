"""TensorFlow for export only, on the CPU: it must not take accelerator memory from JAX."""

from __future__ import annotations

from playbook.export.exportable import ExportError


def tensorflow():
  """``import tensorflow`` with every GPU hidden from it (before TF first touches them)."""
  import tensorflow as tf  # Heavy: imported only on the export path.
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TF's devices were initialised earlier in this process.
    if tf.config.get_visible_devices("GPU"):
      raise ExportError("TensorFlow was initialised with GPUs visible before export started and "
                        "would hold accelerator memory: import playbook.export.tf_cpu first, or "
                        "set CUDA_VISIBLE_DEVICES='' for the exporting process.")
  return tf
