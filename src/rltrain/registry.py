"""A trained agent as an MLflow model: a pyfunc that returns Q-values and greedy actions,
registered in the Model Registry.

    version = register_run(uri, run_id, "dqn-cartpole")
    model = mlflow.pyfunc.load_model("models:/dqn-cartpole/latest")
    model.predict(np.array([[0.01, 0.0, -0.02, 0.0]], dtype=np.float32))
    #        q_0       q_1  action
    # 0  12.3456   12.9876       1

The model holds the run's ``config.yaml`` and ``dqn_weights.h5``, and its code is
``pyfunc_model.py`` (MLflow's models from code, no pickle); loading it rebuilds the agent
(tf-keras with the keras-rl2 shims, as training did) and loads the weights. Loading needs
this project installed (``pip install -e .``): the model's class lives here.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from rltrain.config import load_saved
from rltrain.tracking import RunNotFound, Tracker, client_for, download_artifact, stored_run

MODEL_PATH = "agent_model"  # the model's folder among the run's artifacts
REQUIREMENTS = ("tensorflow", "tf-keras", "keras-rl2", "gymnasium", "omegaconf", "hydra-core",
                "mlflow", "numpy", "pandas", "h5py", "ale-py", "opencv-python-headless")
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>.+))$")


class QNetworkModel(mlflow.pyfunc.PythonModel):
    """The agent's Q-network: observations in (one row each), Q-values and action out."""

    def __init__(self, obs_shape: tuple[int, ...] = (), nb_actions: int = 0,
                 input_scale: float = 1.0) -> None:
        self.obs_shape = tuple(obs_shape)
        self.nb_actions = int(nb_actions)
        self.input_scale = float(input_scale)  # 1/255 for uint8 frames (scaled in the model)
        self._agent: Any = None
        self._window = 1

    def load_context(self, context: Any) -> None:
        """Shapes from the model's ``model_config``, then the agent from its artifacts."""
        self.obs_shape = tuple(context.model_config["obs_shape"])
        self.nb_actions = int(context.model_config["nb_actions"])
        self.input_scale = float(context.model_config.get("input_scale", 1.0))
        self.load(Path(context.artifacts["config"]), Path(context.artifacts["weights"]))

    def load(self, config: Path, weights: Path) -> None:
        """Rebuild the agent ``config`` describes and load ``weights`` into it."""
        from rltrain import compat
        from rltrain.agent import build_agent

        cfg = load_saved(config)
        compat.load(threads=int(OmegaConf.select(cfg, "train.threads", default=1)))
        self._window = int(cfg.agent.memory.window_length)
        agent = build_agent(cfg.agent, self.obs_shape, self.nb_actions,
                            input_scale=self.input_scale)
        agent.load_weights(str(weights))
        agent.training = False
        self._agent = agent

    @property
    def width(self) -> int:
        return self._window * int(np.prod(self.obs_shape))

    def q_values(self, observations: Any) -> np.ndarray:
        """``(n, nb_actions)`` Q-values for ``n`` rows of ``width`` numbers."""
        batch = np.asarray(observations, dtype=np.float32).reshape(
            -1, self._window, *self.obs_shape)
        return np.asarray(self._agent.model.predict_on_batch(batch), dtype=np.float64)

    def predict(self, context: Any, model_input: np.ndarray,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """A frame of ``q_0 .. q_{n-1}`` and ``action`` (the greedy one), a row per
        observation: a float32 array ``(n, width)``, as the env gives observations (MLflow
        checks the dtype against the signature); a DataFrame of ``width`` columns works."""
        q = self.q_values(np.asarray(model_input, dtype=np.float32))
        frame = pd.DataFrame(q, columns=[f"q_{a}" for a in range(self.nb_actions)])
        frame["action"] = q.argmax(axis=1).astype(np.int64)
        return frame


def _requirements() -> list[str]:
    """Pinned versions of what loading the model imports (no slow inference by MLflow)."""
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return pins


def _spaces(cfg: DictConfig) -> tuple[tuple[int, ...], int, float]:
    """The agent's observation shape, number of actions and input scale."""
    from rltrain.envs import input_scale, make_env

    env = make_env(cfg.env, 0)
    try:
        space = env.observation_space
        return tuple(space.shape), int(env.action_space.n), input_scale(space)
    finally:
        env.close()


def _example(cfg: DictConfig, width: int) -> np.ndarray:
    """Three start observations of the env (a window repeats its first observation)."""
    from rltrain.envs import make_env

    env = make_env(cfg.env, 0)
    try:
        starts = [np.ravel(env.reset(seed=seed)[0]) for seed in range(3)]
    finally:
        env.close()
    return np.asarray([np.tile(obs, width // obs.size) for obs in starts], dtype=np.float32)


def signature(width: int, nb_actions: int) -> Any:
    """What the model takes and gives: float32 rows of ``width`` numbers; ``q_0 ..
    q_{n-1}`` (double) and ``action`` (long). Written out, not inferred: inferring it
    would build the agent once more (about 1.5 s a run)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    outputs = [ColSpec("double", f"q_{a}") for a in range(nb_actions)]
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, width))]),
                          outputs=Schema([*outputs, ColSpec("long", "action")]))


def save_run_model(config: Path, weights: Path, folder: Path, model_id: str = "",
                   run_id: str = "") -> Path:
    """Save the pyfunc model of one run's files in ``folder``; return its path. ``model_id``:
    the logged model it becomes (its MLmodel file says so, as ``mlflow.pyfunc.log_model``
    writes it)."""
    from mlflow.models import Model

    cfg = load_saved(config)
    obs_shape, nb_actions, scale = _spaces(cfg)
    width = int(cfg.agent.memory.window_length) * int(np.prod(obs_shape))
    path = folder / MODEL_PATH
    quiet = logging.getLogger("mlflow.pyfunc")  # "Validating input example ..."
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        mlflow.pyfunc.save_model(
            str(path), python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            model_config={"obs_shape": list(obs_shape), "nb_actions": nb_actions,
                          "input_scale": scale},
            artifacts={"config": str(config), "weights": str(weights)},
            signature=signature(width, nb_actions), input_example=_example(cfg, width),
            pip_requirements=_requirements(),
            mlflow_model=Model(model_id=model_id or None, run_id=run_id or None,
                               model_uuid=model_id or None) if model_id else None)
    finally:
        quiet.setLevel(level)
    return path


def log_agent(tracker: Tracker, name: str, config: Path, weights: Path, step: int,
              metrics: Mapping[str, float], params: Mapping[str, Any],
              tags: Mapping[str, Any]) -> str:
    """Log a run's delivered agent as an MLflow 3 logged model linked to the run at ``step``
    with ``metrics`` (the experiment's Models tab, ``mlflow.search_logged_models``); return
    its model id. Load it with ``mlflow.pyfunc.load_model(f"models:/{model_id}")``."""
    model_id = tracker.start_model(name, params, tags)
    with tempfile.TemporaryDirectory(prefix="logged-model-") as tmp:
        path = save_run_model(config, weights, Path(tmp), model_id, tracker.run_id)
        tracker.finish_model(model_id, path, step, metrics)
    return model_id


def register_run(uri: str, run_id: str, name: str) -> str:
    """Log run ``run_id``'s agent as a pyfunc model (its artifact ``agent_model/``) and
    register it as a new version of model ``name``; return the version number."""
    client = client_for(uri)
    run = stored_run(uri, run_id)
    with tempfile.TemporaryDirectory(prefix="register-") as tmp:
        folder = Path(tmp)
        config = download_artifact(uri, run_id, "config.yaml", folder / "files")
        weights = download_artifact(uri, run_id, "dqn_weights.h5", folder / "files")
        path = save_run_model(config, weights, folder)
        client.log_artifacts(run_id, str(path), MODEL_PATH)
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name, description="DQN agents (keras-rl2) trained by "
                                       "keras-rl-sweep: Q-values and greedy actions")
    source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_PATH}"
    model_version = client.create_model_version(
        name, source, run_id=run_id, tags={"run_name": run.name, "experiment": run.experiment})
    client.set_tag(run_id, "registered_model", f"{name}/{model_version.version}")
    return str(model_version.version)


def source_run(uri: str, target: str) -> str:
    """The run a ``models:/NAME/VERSION``, ``models:/NAME/latest`` or ``models:/NAME@ALIAS``
    URI was registered from; any other ``target`` (a run id) as it is."""
    if not target.startswith("models:/"):
        return target
    match = MODEL_URI.match(target)
    if match is None:
        raise RunNotFound(f"{target}: not a model URI (models:/NAME/VERSION, "
                          f"models:/NAME/latest or models:/NAME@ALIAS)")
    client = client_for(uri)
    name = match["name"]
    try:
        if match["alias"]:
            found = client.get_model_version_by_alias(name, match["alias"])
        elif match["version"] == "latest":
            versions = client.search_model_versions(f"name = '{name}'")
            found = max(versions, key=lambda v: int(v.version)) if versions else None
        else:
            found = client.get_model_version(name, match["version"])
    except Exception as err:
        raise RunNotFound(f"{target}: no such model version ({type(err).__name__})") from err
    if found is None or not found.run_id:
        raise RunNotFound(f"{target}: no such model version, or it has no source run")
    return found.run_id
