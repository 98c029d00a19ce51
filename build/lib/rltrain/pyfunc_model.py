"""The code of the registered pyfunc model (MLflow's "models from code": no pickle).

MLflow copies this file into the model and runs it on load; the shapes come from the
model's ``model_config`` (see rltrain.registry).
"""

from mlflow.models import set_model

from rltrain.registry import QNetworkModel

set_model(QNetworkModel())
