"""The winner as an MLflow model: a tiny trained run, registered, loaded with pyfunc from
``models:/NAME/latest``, gives the Q-values and greedy actions of the trained agent."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

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
    from sweep.register import cmd_register
    from sweep.reproduce import cmd_watch

    run_id, _ = tracked_train(tiny("agent.impl=fast", "train.test_episodes=0",
                                   "train.nb_steps=100", "train.eval_interval=0"))
    assert cmd_register([run_id, f"tracking.uri={tracking_uri}"]) == 0
    assert "as model keras-rl-cartpole version 1" in capsys.readouterr().out  # the experiment
    assert cmd_watch(["models:/keras-rl-cartpole/latest", f"tracking.uri={tracking_uri}"]) == 0
    assert (workdir / "outputs" / "watch" / run_id / "agent.gif").is_file()
