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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any


def environment() -> None:
    """TensorFlow's settings, unless the user's environment says otherwise (set on import;
    TensorFlow reads TF_USE_LEGACY_KERAS when ``tf.keras`` is first used)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TF's C++ info banners
    # oneDNN's kernels cost more than they save on a 16-unit network's tiny matrices: with
    # them off, a session call of the train step is ~15% faster and a forward pass ~3x.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


environment()


@contextmanager
def quiet_stderr() -> Iterator[None]:
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
        with quiet_stderr():
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
        # keras-rl2 (stock memory) warns on every batch drawn before the memory holds a
        # batch: expected during a short warm-up, said once in the README, not per worker.
        warnings.filterwarnings("ignore", message="Not enough entries to sample without")
        load._done = True  # type: ignore[attr-defined]
    import tf_keras

    return tf_keras


def adam(lr: float):
    """Shim 2: keras-rl2's AdditionalUpdatesOptimizer reads ``optimizer._name``,
    which only the legacy tf-keras optimizers have."""
    tf_keras = load()
    return tf_keras.optimizers.legacy.Adam(learning_rate=lr)


@contextmanager
def trusted_lambdas() -> Iterator[None]:
    """Shim 4: keras-rl2 clones the model with ``model_from_config``; with the dueling
    head that model holds keras-rl2's own Python lambdas, which tf-keras' safe mode
    refuses to deserialize. Allow them while an agent is compiled, nowhere else."""
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    with SafeModeScope(safe_mode=False):
        yield


def session_callable(session: Any, fetch: Any, feed: Any) -> Callable[..., Any]:
    """A fast ``fetch = f(*feeds)`` on a TF1 session: one tensor out, one in (or a list).

    ``Session.make_callable`` with a feed list falls back to the generic ``run`` path
    (~0.2 ms of Python per call); ``_make_callable_from_options`` is the C++ callable
    that Keras' own graph functions use.
    """
    from tensorflow.core.protobuf import config_pb2

    options = config_pb2.CallableOptions()
    options.feed.extend(f.name for f in (feed if isinstance(feed, list | tuple) else [feed]))
    options.fetch.append(fetch.name)
    run = session._make_callable_from_options(options)
    return lambda *values: run(*values)[0]
