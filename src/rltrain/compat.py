"""The shims keras-rl2 1.0.5 needs on TensorFlow 2.21 + tf-keras, in one place.

Import this module (or call :func:`load`) before anything imports TensorFlow or ``rl``.
It selects tf-keras (Keras 2) through ``TF_USE_LEGACY_KERAS``, gives
``tensorflow.keras`` the ``__version__`` keras-rl2 reads, and imports ``rl.agents``,
which switches the whole process to TF1 graph mode (keras-rl2 does this itself).
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TF's C++ info banners


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Hide the C++ banners TensorFlow prints on import (CUDA, oneDNN) before absl
    logging can be configured; show them if the import fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def load(threads: int = 1) -> ModuleType:
    """Import TensorFlow and keras-rl2 with the shims applied; return ``tf_keras``.

    ``threads`` sizes TensorFlow's intra- and inter-op pools (one per worker process).
    Only the first call in a process can set them.
    """
    if not getattr(load, "_done", False):
        with _quiet_stderr():
            import tensorflow as tf
            import tf_keras

            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
            tf.config.list_physical_devices()  # the CUDA probe logs here, on first use

        # Shim 1: rl/callbacks.py reads tensorflow.keras.__version__, absent under tf-keras.
        import tensorflow.keras as tf_dot_keras  # the module rl/callbacks.py imports from

        if not hasattr(tf_dot_keras, "__version__"):
            tf_dot_keras.__version__ = tf_keras.__version__
        import rl.agents  # noqa: F401  (disables eager execution for the process)

        warnings.filterwarnings("ignore", message=".*Model.state_updates.*")
        load._done = True  # type: ignore[attr-defined]
    import tf_keras

    return tf_keras


def adam(lr: float):
    """Shim 2: keras-rl2's AdditionalUpdatesOptimizer reads ``optimizer._name``,
    which only the legacy tf-keras optimizers have."""
    tf_keras = load()
    return tf_keras.optimizers.legacy.Adam(learning_rate=lr)
