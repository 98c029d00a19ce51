"""reproduce, evaluate and watch on real runs in a real MLflow store (tiny budgets)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from rltrain.run import tracked_train
from tests.conftest import run_cli
from tests.test_train import artifact_paths


@pytest.fixture
def recorded(tiny) -> str:
    """A finished tiny run to reproduce (trained in this process)."""
    run_id, _ = tracked_train(tiny("train.nb_steps=400", "seed=11"))
    return run_id


def gif_frames(client: MlflowClient, run_id: str) -> int:
    with Image.open(client.download_artifacts(run_id, "agent.gif")) as gif:
        return gif.n_frames


def test_reproduce_matches_and_tags(recorded: str, tracking_uri: str, workdir: Path,
                                    client: MlflowClient) -> None:
    proc = run_cli("reproduce", recorded, f"tracking.uri={tracking_uri}", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("match: run ")
    new_id = proc.stdout.split()[2]
    new = client.get_run(new_id)
    assert new.data.tags["reproduces"] == recorded
    assert new.data.tags["reproduce.verdict"] == "match"
    assert new.data.params["seed"] == "11" and new.data.params["train.nb_steps"] == "400"
    original = [m.value for m in client.get_metric_history(recorded, "episode_reward")]
    again = [m.value for m in client.get_metric_history(new_id, "episode_reward")]
    assert again == original
    assert gif_frames(client, new_id) > 1


def test_reproduce_reports_where_runs_diverge(recorded: str, tiny, tracking_uri: str,
                                              workdir: Path) -> None:
    """A run whose recorded curve differs from what its config gives is a mismatch."""
    from rltrain.tracking import tracker_for

    tracker = tracker_for(tracking_uri, recorded)
    tracker.log_metric("episode_reward", 999.0, 1)  # tamper: an extra early episode
    tracker.flush(wait=True)
    proc = run_cli("reproduce", recorded, f"tracking.uri={tracking_uri}", cwd=workdir)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stdout.startswith("mismatch")
    assert "episode rewards diverge at episode 0 (step 1)" in proc.stdout


def test_watch_logs_a_gif(recorded: str, tracking_uri: str, workdir: Path,
                          client: MlflowClient) -> None:
    proc = run_cli("watch", recorded, "episodes=2", f"tracking.uri={tracking_uri}", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert gif_frames(client, recorded) > 2  # two episodes


def test_evaluate_three_seeds(recorded: str, tracking_uri: str, workdir: Path,
                              client: MlflowClient) -> None:
    proc = run_cli("evaluate", recorded, "seeds=3", "jobs=2", f"tracking.uri={tracking_uri}",
                   cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "delivered agent" in proc.stdout and "IQM" in proc.stdout
    parent_id = proc.stdout.split("/runs/")[-1].split("?")[0]
    parent = client.get_run(parent_id)
    assert parent.data.tags["evaluates"] == recorded
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(c.data.params["seed"] for c in children) == [  # fresh: no sweep uses them
        "2000000000", "2000000001", "2000000002"]
    assert all(c.info.status == "FINISHED" for c in children)
    tests = [c.data.metrics["test/mean_reward"] for c in children]  # the delivered agents
    assert parent.data.metrics["evaluate/mean"] == pytest.approx(sum(tests) / 3)
    solved = sum(t >= 475 for t in tests)
    assert parent.data.metrics["evaluate/solved_fraction"] == pytest.approx(solved / 3)
    assert f"solved {solved}/3" in proc.stdout
    assert {"seed_curves.png", "agent.gif", "config.yaml"} <= artifact_paths(client, parent_id)
    with Image.open(client.download_artifacts(parent_id, "seed_curves.png")) as png:
        assert png.info["Title"] == f"evaluate-{client.get_run(recorded).info.run_name}: " \
                                    "3 seeds' evaluations"


@pytest.mark.parametrize(("args", "message"), [
    (["reproduce", "0123456789abcdef"], "run 0123456789abcdef: not found"),
    (["evaluate", "0123456789abcdef", "seeds=0"], "seeds=0: must be >= 1"),
    (["evaluate", "0123456789abcdef", "seeds=many"], "seeds=many: must be a whole number"),
    (["watch"], "watch: give a run id or 'best' first"),
])
def test_bad_input(args: list[str], message: str, tracking_uri: str, workdir: Path) -> None:
    proc = run_cli(*args, f"tracking.uri={tracking_uri}", cwd=workdir)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {message}")


def test_run_without_config_artifact(tracking_uri: str, workdir: Path,
                                     client: MlflowClient) -> None:
    bare = client.create_run(client.create_experiment("bare")).info.run_id
    client.set_terminated(bare)
    proc = run_cli("reproduce", bare, f"tracking.uri={tracking_uri}", cwd=workdir)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: run {bare}: has no artifact config.yaml"


def test_reproduce_keeps_the_recorded_threads(tiny, tracking_uri: str, workdir: Path,
                                              client: MlflowClient) -> None:
    """The run's own ``train.threads`` is retrained, not today's default; one given on the
    command line is used instead, and said."""
    recorded, _ = tracked_train(tiny("train.nb_steps=200", "train.threads=2"))
    proc = run_cli("reproduce", recorded, f"tracking.uri={tracking_uri}", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert client.get_run(proc.stdout.split()[2]).data.params["train.threads"] == "2"
    assert "train.threads" not in proc.stderr
    proc = run_cli("reproduce", recorded, "train.threads=1", f"tracking.uri={tracking_uri}",
                   cwd=workdir)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # a match is likely, not promised
    assert client.get_run(proc.stdout.split()[2]).data.params["train.threads"] == "1"
    assert "note: train.threads=1 as given (the run recorded train.threads=2)" in proc.stderr
