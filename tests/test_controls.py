"""Sweep controls (tiny real sweeps): sweep.timeout, sweep.stop_at, the warm start,
sweep.enqueue, and the model-based samplers that need packages (CMA-ES, GP)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import optuna
import pytest

from sweep.engine import invocation, stops
from sweep.engine import study as study_
from sweep.engine.enqueue import WARM
from sweep.engine.leaders import stored_results
from sweep.engine.settings import SweepSettings, plan
from sweep.present import report
from tests.test_sweep import COMPLETE, TINY, load, runs

WAITING = optuna.trial.TrialState.WAITING
# A trial of 1,500 stock steps outlasts a 4 s timeout on machines of this kind (the fastest
# seen trained 600 steps in 4 s: at timeout=5 it claimed a second trial).
TIMEOUT = 4
OUTLASTS_TIMEOUT = ("agent.impl=keras-rl", "train.nb_steps=1500",  # stock: ~10 s
                    "train.eval_interval=500")


@pytest.fixture
def sweep(tracking_uri: str):
    """Run ``python -m sweep multirun TINY ARGS`` in this process; return the Outcome."""

    def run(*args: str) -> invocation.Outcome:
        return invocation.run(plan([*TINY, f"tracking.uri={tracking_uri}", *args]), report)

    return run


def enqueued(study: optuna.Study) -> list[str]:
    return [t.user_attrs.get("enqueued", "") for t in study.trials]


def test_timeout_stops_claiming_running_trials_finish(sweep, client, capsys) -> None:
    """No trial is claimed after sweep.timeout; the running one finishes, the invocation is
    done (the recheck's gate opens: see the stop_at test for a recheck that runs), and the
    same command continues the study (the timeout is per invocation)."""
    client.search_experiments()  # the store exists: the first claim comes within a second
    args = ("sweep.n_trials=2", f"sweep.timeout={TIMEOUT}", *OUTLASTS_TIMEOUT)
    start = time.time()
    first = sweep(*args)
    assert (first.exit_code, first.new_trials) == (0, 1), first.message
    (trial,) = load().trials
    assert trial.state == COMPLETE  # claimed before the deadline, finished after it
    assert trial.datetime_start.timestamp() < start + TIMEOUT < trial.datetime_complete.timestamp()
    assert f"sweep.timeout={TIMEOUT} s reached: no new trials in this invocation" in \
        capsys.readouterr().err
    p = plan([*TINY, *args])
    assert invocation._trials_done(load(), p, time.monotonic() - 1)  # the recheck would run now
    assert not invocation._trials_done(load(), p, time.monotonic() + 60)  # (not before)

    again = sweep(*args)  # the same command: a new invocation, a new timeout
    assert (again.exit_code, again.new_trials) == (0, 1), again.message
    assert [t.state for t in load().trials] == [COMPLETE, COMPLETE]
    parents, _ = runs(client)
    assert [p.info.status for p in parents] == ["FINISHED", "FINISHED"]

    # timeout and stop_at are no difference to the study: other values resume it
    other = sweep("sweep.n_trials=2", "sweep.timeout=0", "sweep.stop_at=1e9", *OUTLASTS_TIMEOUT)
    assert (other.exit_code, other.new_trials) == (0, 0), other.message


def test_stop_at_ends_the_sweep_and_a_rerun_only_rechecks(sweep, client, capsys) -> None:
    """Every CartPole trial scores above -1: after the first, no trial is claimed; the same
    command again says the target was reached, runs only what is left (here: the recheck
    it now asks for) and exits 0."""
    first = sweep("sweep.n_trials=3", "sweep.stop_at=-1")
    assert (first.exit_code, first.new_trials) == (0, 1), first.message
    value = load().trials[0].value
    err = capsys.readouterr().err
    assert f"sweep.stop_at=-1 reached by trial 0 (value {value:g}): no new trials" in err

    again = sweep("sweep.n_trials=3", "sweep.stop_at=-1", "sweep.recheck_top_k=1",
                  "sweep.recheck_seeds=1")
    assert (again.exit_code, again.new_trials) == (0, 0), again.message
    assert "sweep.stop_at=-1 reached by trial 0" in capsys.readouterr().err
    assert len(load().trials) == 1 and len(stored_results(load())) == 1
    assert load().user_attrs["recheck_winner"]["trial"] == 0


@pytest.mark.parametrize(("direction", "target", "hit"), [
    ("maximize", 20.0, 1), ("maximize", 10.0, 0), ("maximize", 31.0, None),
    ("minimize", 15.0, 0), ("minimize", 5.0, None)])
def test_stop_at_respects_the_direction(direction: str, target: float, hit: int | None) -> None:
    study = optuna.create_study(direction=direction)
    for value in (10.0, 30.0, 20.0):
        study.add_trial(optuna.trial.create_trial(value=value))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    s = SweepSettings(direction=direction, stop_at=target)
    found = stops.reached_by(study, s)
    assert (found.number if found else None) == hit
    assert bool(stops.reason(study, s, None)) == (hit is not None)
    assert stops.reason(study, SweepSettings(timeout=1), time.monotonic() - 1).startswith(
        "sweep.timeout=1 s reached")


def test_warm_start_then_enqueued_configs_once(sweep, workdir: Path, client) -> None:
    """Trial 0 is the config's own values of the searched keys inside the space (the batch
    size of 32 is not in choice(64,128): sampled); the file's entries come next, once: a
    resumed study does not queue them again."""
    queue = workdir / "zoo.yaml"
    queue.write_text("- {agent.lr: 0.0006, agent.batch_size: 64}\n"
                     "- {agent.model.units: 24}\n")
    args = ("agent.model.units=choice(8,16,24)", f"sweep.enqueue={queue}")
    assert sweep("sweep.n_trials=2", *args).new_trials == 2
    warm, zoo, waiting = load().trials
    assert warm.params["agent.model.units"] == 16 and warm.params["agent.lr"] == 0.001
    assert warm.params["agent.policy.value_min"] == 0.1
    assert warm.params["agent.target_model_update"] == 0.01
    assert warm.params["agent.batch_size"] in (64, 128)  # the default 32: left to the sampler
    assert (zoo.params["agent.lr"], zoo.params["agent.batch_size"]) == (0.0006, 64)
    assert [warm.state, zoo.state, waiting.state] == [COMPLETE, COMPLETE, WAITING]
    assert enqueued(load()) == [WARM, f"{queue} entry 1", f"{queue} entry 2"]

    assert sweep("sweep.n_trials=4", *args).new_trials == 2  # entry 2, then a sampled one
    trials = load().trials
    assert [t.state for t in trials] == [COMPLETE] * 4
    assert trials[2].params["agent.model.units"] == 24
    assert enqueued(load())[3] == ""  # sampled: nothing queued twice
    assert sweep("sweep.n_trials=4", *args).new_trials == 0
    assert len(load().trials) == 4


def test_warm_start_off_queues_nothing(workdir: Path, tracking_uri: str) -> None:
    p = plan([*TINY, f"tracking.uri={tracking_uri}", "sweep.warm_start=false"])
    assert p.warm == {} and p.queue == []
    _, study = study_.open_study(p, join=False)
    assert study.trials == []
    p = plan([*TINY, f"tracking.uri={tracking_uri}", "sweep.study_name=warm"])
    _, study = study_.open_study(p, join=False)
    assert [t.system_attrs["fixed_params"] for t in study.trials] == [p.warm]
    _, study = study_.open_study(p, join=False)  # resumed: not queued again
    assert len(study.trials) == 1


@pytest.mark.parametrize(("sampler", "mark"), [("cmaes", "cma:generation"),
                                               ("gp", "gp:relative_params:0")])
def test_model_based_samplers_run(sweep, sampler: str, mark: str) -> None:
    """After one start-up trial (the warm start), CMA-ES / the GP sampler draw the next
    trials themselves (each marks the trials it sampled); GP takes a choice(...) too."""
    space = ["agent.model.layers=1", "agent.target_model_update=0.01", "agent.batch_size=32",
             "agent.model.units=choice(8,16)" if sampler == "gp" else "agent.model.units=16"]
    outcome = sweep("sweep.n_trials=3", f"sweep.sampler={sampler}",
                    "sweep.sampler_startup_trials=1", *space)
    assert (outcome.exit_code, outcome.new_trials) == (0, 3), outcome.message
    trials = load().trials
    assert [t.state for t in trials] == [COMPLETE] * 3
    assert [any(k.startswith(mark) for k in t.system_attrs) for t in trials] == [
        False, True, True]
    assert trials[1].params != trials[2].params


def test_cmaes_refuses_a_choice_dimension() -> None:
    from rltrain.config import ConfigError

    with pytest.raises(ConfigError) as refused:
        plan([*TINY, "sweep.sampler=cmaes", "agent.model.units=choice(8,16)"])
    assert str(refused.value).startswith("sweep.sampler=cmaes: agent.model.units=choice(8,16)")
    assert plan([*TINY, "sweep.sampler=cmaes", "agent.model.units=range(8,17,8)",
                 "agent.model.layers=2", "agent.target_model_update=0.01",
                 "agent.batch_size=32"]).space.dimensions


def test_two_workers_stop_at_the_deadline(workdir: Path, tracking_uri: str) -> None:
    """claim itself: past the deadline it gives no trial (any worker, any storage)."""
    from sweep.engine.storage import open_storage
    from sweep.engine.workers import Job, claim, load_study

    p = plan([*TINY, f"tracking.uri={tracking_uri}", "sweep.n_trials=4"])
    study_.create_study(p, open_storage(p))
    job = Job(p, "", threading.Lock(), threading.Event(), 0, deadline=time.monotonic() + 60)
    assert claim(load_study(job, open_storage(p)), open_storage(p), job, 0) is not None
    job.deadline = time.monotonic() - 1
    assert claim(load_study(job, open_storage(p)), open_storage(p), job, 1) is None
