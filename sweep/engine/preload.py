"""What a worker imports before it is forked (sweep/engine/processes.py): the modules whose import
costs seconds, imported and never run. TensorFlow comes after rltrain.compat, which sets
its environment (tf-keras, quiet banners); ``compat.load()`` (thread pools, keras-rl2's
graph mode) is left to each worker."""

from rltrain import compat

with compat.quiet_stderr():
    import tensorflow  # noqa: F401
    import tf_keras  # noqa: F401

import mlflow.store.tracking.sqlalchemy_store  # noqa: E402, F401
import optuna  # noqa: E402, F401

import rltrain.run  # noqa: E402, F401  (MLflow, matplotlib)
import sweep.engine.trial  # noqa: E402, F401
import sweep.engine.workers  # noqa: E402, F401
