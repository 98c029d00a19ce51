"""The winner as an MLflow model: a tiny trained run, registered, loaded with pyfunc from
``models:/NAME/latest``, gives the Q-values and greedy actions of the trained agent."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import LoggedModelStatus

from rltrain.registry import register_run, source_run
from rltrain.run import tracked_train
from rltrain.tracking import RunNotFound


def test_register_load_predict_and_resolve(tiny, tracking_uri: str, client, workdir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny("agent.impl=fast", "train.test_episodes=0")
    run_id, result = tracked_train(cfg)
    assert register_run(tracking_uri, run_id, "dqn-tiny") == "1"
    assert register_run(tracking_uri, run_id, "dqn-tiny") == "2"  # a new version each time

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # where models:/ is looked up
    model = mlflow.pyfunc.load_model("models:/dqn-tiny/latest")
    env = gym.make("CartPole-v1")
    observations = np.asarray([env.reset(seed=s)[0] for s in range(5)], dtype=np.float32)
    env.close()
    out = model.predict(observations)
    assert list(out.columns) == ["q_0", "q_1", "action"] and len(out) == 5
    q = out[["q_0", "q_1"]].to_numpy()
    assert (out["action"].to_numpy() == q.argmax(axis=1)).all()

    # the same numbers as the trained agent's own forward pass on its saved weights
    from rltrain.agent import build_agent

    agent = build_agent(cfg.agent, (4,), 2)
    agent.load_weights(str(result.weights_path))
    own = np.array([agent.compute_q_values(obs.reshape(1, 4)) for obs in observations])
    np.testing.assert_allclose(q, own, rtol=1e-4, atol=1e-5)

    as_frame = model.predict(pd.DataFrame(observations))  # a DataFrame works too
    np.testing.assert_allclose(as_frame[["q_0", "q_1"]].to_numpy(), q, rtol=1e-6)

    spec = model.metadata.get_input_schema().inputs[0]
    assert spec.shape == (-1, 4) and str(spec.type) == "float32"
    assert model.metadata.get_output_schema().input_names() == ["q_0", "q_1", "action"]
    assert client.get_run(run_id).data.tags["registered_model"] == "dqn-tiny/2"

    assert source_run(tracking_uri, "models:/dqn-tiny/latest") == run_id
    assert source_run(tracking_uri, "models:/dqn-tiny/1") == run_id
    assert source_run(tracking_uri, run_id) == run_id
    with pytest.raises(RunNotFound, match="no such model version"):
        source_run(tracking_uri, "models:/nope/latest")


def test_register_command_and_watch_a_model(tiny, tracking_uri: str, workdir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from sweep.__main__ import main

    run_id, _ = tracked_train(tiny("agent.impl=fast", "train.test_episodes=0",
                                   "train.nb_steps=100", "train.eval_interval=0"))
    assert main(["register", run_id, f"tracking.uri={tracking_uri}"]) == 0
    assert "as model keras-rl-cartpole version 1" in capsys.readouterr().out  # the experiment
    assert main(["watch", "models:/keras-rl-cartpole/latest", f"tracking.uri={tracking_uri}"]) == 0
    assert (workdir / "outputs" / "watch" / run_id / "agent.gif").is_file()


def test_a_run_s_agent_is_a_logged_model_with_its_metrics(tiny, tracking_uri: str, client,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """MLflow 3's model view: the run's delivered agent is a logged model, linked to the run
    at its last step with its final metrics, found by search_logged_models, loadable."""
    run_id, result = tracked_train(tiny("agent.impl=fast", "tracking.log_models=true"),
                                   tags={"sweep.study": "lm"})
    unlogged, _ = tracked_train(tiny("agent.impl=fast", "tracking.log_models=false",
                                     "train.nb_steps=100", "train.eval_interval=0"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    experiment = client.get_experiment_by_name("keras-rl-cartpole").experiment_id
    (model,) = mlflow.search_logged_models(
        experiment_ids=[experiment], filter_string="metrics.`test/mean_reward` > -1",
        output_format="list")
    assert model.source_run_id == run_id and model.status == LoggedModelStatus.READY
    assert model.name == client.get_run(run_id).info.run_name
    assert model.tags["sweep.study"] == "lm" and model.params["agent.impl"] == "fast"
    linked = {m.key: (m.value, m.step, m.run_id) for m in model.metrics}
    assert linked["test/mean_reward"] == (result.test_mean_reward, 300, run_id)
    assert {"test/final_weights_mean_reward", "eval/best_mean_reward"} <= set(linked)
    outputs = client.get_run(run_id).outputs.model_outputs
    assert [(o.model_id, o.step) for o in outputs] == [(model.model_id, 300)]
    assert not client.get_run(unlogged).outputs.model_outputs  # tracking.log_models=false

    loaded = mlflow.pyfunc.load_model(f"models:/{model.model_id}")
    out = loaded.predict(np.zeros((2, 4), dtype=np.float32))
    assert list(out.columns) == ["q_0", "q_1", "action"] and len(out) == 2
