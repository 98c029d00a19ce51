"""Real training runs (tiny budgets) recorded in a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from rltrain.loop import StopTraining
from rltrain.run import tracked_train
from rltrain.train import train
from tests.conftest import TINY, run_cli, run_python


def artifact_paths(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        out |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def test_tracked_run_records_metrics_and_artifacts(tiny, client: MlflowClient) -> None:
    run_id, result = tracked_train(tiny())
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["agent.model.units"] == "16"
    assert run.data.params["agent.memory.limit"] == "1000"

    rewards = client.get_metric_history(run_id, "episode_reward")
    assert [m.step for m in rewards] == result.episode_end_steps
    assert [m.value for m in rewards] == result.episode_rewards
    for name in ("nb_episode_steps", "loss", "mae", "mean_q", "epsilon"):
        assert client.get_metric_history(run_id, name), name
    evals = client.get_metric_history(run_id, "eval/mean_reward")
    assert [(m.step, m.value) for m in evals] == result.evaluations
    assert evals[-1].step == 300 and len(evals) >= 3
    assert run.data.metrics["test/mean_reward"] == pytest.approx(result.test_mean_reward)

    files = artifact_paths(client, run_id)
    assert {"config.yaml", "dqn_log.json", "dqn_weights.h5", "learning_curve.png",
            "checkpoints/dqn_weights_100.h5", "checkpoints/dqn_weights_300.h5"} <= files
    log = json.loads(Path(client.download_artifacts(run_id, "dqn_log.json")).read_text())
    assert log["episode_reward"] == result.episode_rewards
    assert {"loss", "mae", "mean_q", "mean_eps", "nb_steps", "duration"} <= log.keys()


SAME_SEED = """
import json, sys
from pathlib import Path
from rltrain.config import compose_config
from rltrain.train import train
r = train(compose_config(sys.argv[1:]), Path("child"))
print(json.dumps([r.episode_rewards, r.evaluations, r.test_rewards]))
"""


def test_same_seed_same_rewards(tiny, workdir: Path) -> None:
    """Same seed: identical episodes in this process and in a fresh one; another seed differs."""
    overrides = [*TINY, "seed=3"]
    first = train(tiny("seed=3"), Path("a"))
    proc = run_python("-c", SAME_SEED, *overrides, cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rewards, evaluations, test = json.loads(proc.stdout.strip().splitlines()[-1])
    assert first.episode_rewards == rewards
    assert [list(e) for e in first.evaluations] == evaluations
    assert first.test_rewards == test
    again = train(tiny("seed=3"), Path("b"))
    assert again.episode_rewards == first.episode_rewards
    other = train(tiny("seed=4"), Path("c"))
    assert first.episode_rewards != other.episode_rewards


class Crash:
    """A callback that fails mid-training, as a bug or a NaN check would."""

    def __init__(self, at_step: int, error: BaseException) -> None:
        self.at_step, self.error, self.steps = at_step, error, 0

    def on_step_end(self, step: int, logs: dict) -> None:
        self.steps += 1
        if self.steps == self.at_step:
            raise self.error


def test_crash_mid_training_ends_failed(tiny, client: MlflowClient) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        # the FileLogger saves every 1000 episodes: only on_train_end can write it here
        tracked_train(tiny("train.log_interval=1000"), callbacks=[Crash(150, RuntimeError("boom"))])
    (run,) = client.search_runs([client.get_experiment_by_name("keras-rl-cartpole").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: boom"
    files = artifact_paths(client, run.info.run_id)
    assert "config.yaml" in files
    # on_train_end ran after the crash: keras-rl2's FileLogger wrote the episodes so far
    assert "dqn_log.json" in files
    log = json.loads(Path(client.download_artifacts(run.info.run_id, "dqn_log.json")).read_text())
    episodes = client.get_metric_history(run.info.run_id, "episode_reward")
    assert len(episodes) > 1 and max(log["nb_steps"]) < 150
    assert log["episode_reward"] == [m.value for m in episodes]  # every episode, not the 1st


def test_stopped_early_ends_killed_with_curve(tiny, client: MlflowClient) -> None:
    run_id, result = tracked_train(tiny(), callbacks=[Crash(150, StopTraining("pruned"))])
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["stopped"] == "pruned"
    assert result.nb_steps == 149 and not result.test_rewards
    assert client.get_metric_history(run_id, "episode_reward")
    assert "learning_curve.png" in artifact_paths(client, run_id)


def test_loop_counts_past_int16(tiny) -> None:
    """keras-rl2's fit wraps its int16 step counter at 32,767 under numpy 2; ours does not."""
    result = train(tiny("train.nb_steps=33000", "agent.nb_steps_warmup=40000",
                        "train.eval_interval=0", "train.checkpoint_interval=0",
                        "train.test_episodes=0",
                        "train.log_interval=100"),  # FileLogger rewrites its whole file
                   Path("long"))
    assert result.nb_steps == 33000
    assert result.episode_end_steps[-1] <= 33000 < result.episode_end_steps[-1] + 500


def test_cli_trains_one_agent(workdir: Path) -> None:
    proc = run_cli("train.nb_steps=200", "train.eval_interval=100", "train.test_episodes=1",
                   "train.eval_episodes=1", "agent.memory.limit=500", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test mean reward" in proc.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("keras-rl-cartpole").experiment_id])
    assert run.info.status == "FINISHED"
    assert list((workdir / "mlruns").rglob("learning_curve.png"))
    assert list((workdir / "outputs").glob("*/*/config.yaml"))


@pytest.mark.parametrize("impl", ["fast", "keras-rl"])
def test_seed_beside_others_trains_as_alone(tiny, workdir: Path, impl: str) -> None:
    """A trial's seeds train side by side (one graph, session and random streams each):
    seed 5 beside seeds 6 and 7 plays exactly the episodes of seed 5 trained alone.
    (Stock keras-rl2's soft target update races Adam's update, whichever TensorFlow runs
    first: it is not repeatable even alone, so the stock agent is compared with hard
    updates.)"""
    from rltrain.train import Learner, train_together

    overrides = [f"agent.impl={impl}", "train.nb_steps=400", "train.checkpoint_interval=0",
                 *(["agent.target_model_update=50"] if impl == "keras-rl" else [])]
    alone = train(tiny(*overrides, "seed=5"), Path("alone"))
    learners = [Learner(tiny(*overrides, f"seed={s}"), Path(f"s{s}")) for s in (6, 5, 7)]
    try:
        rounds: list[int] = []
        results = train_together(learners, after_round=rounds.append)
    finally:
        for learner in learners:
            learner.close()
    beside = results[1]
    assert beside.episode_rewards == alone.episode_rewards
    assert beside.evaluations == alone.evaluations
    assert beside.test_rewards == alone.test_rewards
    assert results[0].episode_rewards != alone.episode_rewards
    assert rounds == list(range(1, len(alone.evaluations) + 1))  # one round per evaluation


def test_keep_best_delivers_best_evaluated_weights(tiny, workdir: Path) -> None:
    """train.keep_best: the delivered weights are those of the best evaluation (the latest
    of equals), tested on other episodes than the evaluations; the final weights are kept
    and tested too. Without it the final weights are delivered."""
    import numpy as np

    from rltrain import compat
    from rltrain.agent import build_agent
    from rltrain.envs import make_env
    from rltrain.loop import run_episodes
    from rltrain.train import EVAL_SEED_OFFSET

    cfg = tiny("train.nb_steps=1500", "train.eval_interval=150", "train.eval_episodes=3",
               "train.test_episodes=4", "train.checkpoint_interval=0", "seed=2")
    result = train(cfg, Path("kept"))
    best_step, best_value = result.best_evaluation
    assert best_value == max(v for _, v in result.evaluations)
    assert best_step == max(s for s, v in result.evaluations if v == best_value)
    assert len(result.test_rewards) == len(result.final_test_rewards) == 4
    assert (Path("kept") / "final_weights.h5").exists()

    keras = compat.load()
    env = make_env(cfg.env, 0)
    agent = build_agent(cfg.agent, env.observation_space.shape, int(env.action_space.n))
    agent.load_weights(str(result.weights_path))  # the delivered agent scores as evaluated
    again = run_episodes(agent, env, 3, cfg.seed + EVAL_SEED_OFFSET)
    assert float(np.mean(again)) == best_value
    keras.backend.clear_session()

    plain = train(tiny("train.nb_steps=1500", "train.eval_interval=150", "train.eval_episodes=3",
                       "train.test_episodes=4", "train.checkpoint_interval=0", "seed=2",
                       "train.keep_best=false"), Path("plain"))
    assert plain.evaluations == result.evaluations  # same training either way
    assert plain.final_test_rewards == [] and plain.test_rewards == result.final_test_rewards
