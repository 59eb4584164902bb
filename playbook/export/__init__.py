"""Export of a trained checkpoint to SavedModel (jax2tf), TFLite (LiteRT) and ONNX (jax2onnx).

    exportable.py   what every exporter takes: a pure function with its params closed over, its
                    input and output signature, real data for parity, accuracy and int8 calibration
    adapters.py     the generic Exportables a task's ``exporter`` builds from a run's config and
                    best checkpoint (``playbook.run.rundir.restore_best``; never a live process)
    saved_model.py  jax2tf -> TF SavedModel, polymorphic batch dimension, no gradients
    tflite.py       batch-1 SavedModel -> .tflite (float32, dynamic-range int8, full int8), LiteRT
    onnx.py         jax2onnx -> .onnx, onnx.checker, onnxruntime runner
    parity.py       every runtime against the JAX function: max abs error, accuracy
    report.py       the bars, report.json and its table
    pipeline.py     a run directory -> DIR/export/: every format asked for, checked, reported
    tf_cpu.py       TensorFlow with every GPU hidden (it must not take accelerator memory)

``python -m launch.export --workdir=DIR`` runs it all: the task registry gives the run's
``Exportable`` (``playbook.tasks.exportable``); export itself imports no task.
"""

from playbook.export.exportable import ExportError, Exportable, TensorSpec
