"""Every command, fed bad input, fails safe: exit code 2, one ``error:`` line naming the key or
value, no traceback, no password anywhere, nothing created, an answer within seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli

SECRET = "PASSWORD"
HTTP = f"tracking.uri=http://user:{SECRET}@127.0.0.1:1"          # nothing listens on port 1
PG_TRACKING = f"tracking.uri=postgresql://u:{SECRET}@127.0.0.1:1/db"
PG_STORAGE = f"sweep.storage=postgresql://u:{SECRET}@127.0.0.1:1/db"
RUN = "0123456789abcdef0123456789abcdef"  # no such run
STORE = "tracking.uri={store}"             # an existing, empty MLflow store
QUEUES = {  # sweep.enqueue files, outside the test's folder: {queues}/NAME.yaml
    "unknown": "- {agent.lr: 0.001}\n- {agent.not_a_key: 3}\n",
    "outside": "- {agent.lr: 0.5}\n",
    "fixed": "- {agent.impl: keras-rl}\n",
    "notalist": "agent.lr: 0.001\n",
}

CASES = [  # (command line, text the error line must contain)
    (["agent.some_new_key=3"], "agent.some_new_key"),
    (["+agent.some_new_key=3"], "agent.some_new_key"),
    (["train", "++train.new_key=1"], "train.new_key"),
    (["agent.model.units=abc"], "agent.model.units"),
    (["agent.gamma=1.5"], "agent.gamma=1.5"),
    (["agent.nb_steps_warmup=0"], "agent.nb_steps_warmup=0"),
    (["agent.gradient_steps=0"], "agent.gradient_steps=0: must be >= 1"),
    (["agent.impl=keras-rl", "agent.gradient_steps=4"],
     "agent.gradient_steps=4: needs agent.impl=fast"),
    (["agent.model.units=32,64"], "agent.model.units=32,64 is a sweep; sweeps run with: "
                                  "python -m sweep multirun agent.model.units=32,64"),
    (["train", "agent.lr=interval(0.1"], "agent.lr=interval(0.1"),
    (["train", HTTP], "tracking.uri=http://user:***@127.0.0.1:1"),
    (["train", PG_TRACKING], "tracking.uri=postgresql://u:***@127.0.0.1:1/db"),
    (["train", "--cfg", "hydra"], "--cfg"),
    (["multirun", "+agent.some_new_key=choice(1,2)"], "agent.some_new_key"),
    (["-m", "+sweep.new_key=1"], "sweep.new_key"),
    (["multirun", "seed=choice(1,2,3)"], "seed=choice(1,2,3): seed cannot be searched"),
    (["multirun", "agent.model.units=choice(16,32"], "agent.model.units=choice(16,32"),
    (["multirun", "sweep.n_jobs=0"], "sweep.n_jobs=0"),
    (["multirun", "sweep.timeout=-1"], "sweep.timeout=-1.0: must be >= 0"),
    (["multirun", "sweep.stop_at=high"], "sweep.stop_at"),
    (["multirun", "sweep.sampler=cmaes"],
     "sweep.sampler=cmaes: agent.model.units=choice(16, 32, 64): CMA-ES takes no choice(...)"),
    (["multirun", "sweep.enqueue=missing.yaml"], "sweep.enqueue=missing.yaml: no such file"),
    (["multirun", "sweep.enqueue={queues}/unknown.yaml"],
     "sweep.enqueue={queues}/unknown.yaml: entry 2: agent.not_a_key: not a key of the search"),
    (["multirun", "sweep.enqueue={queues}/outside.yaml"],
     "sweep.enqueue={queues}/outside.yaml: entry 1: agent.lr=0.5: outside the search space "
     "agent.lr=tag(log, interval(5e-4, 3e-3))"),
    (["multirun", "sweep.enqueue={queues}/fixed.yaml"],
     "sweep.enqueue={queues}/fixed.yaml: entry 1: agent.impl: fixed for every trial"),
    (["multirun", "sweep.enqueue={queues}/notalist.yaml"],
     "sweep.enqueue={queues}/notalist.yaml: a YAML list of mappings expected"),
    (["multirun", PG_STORAGE], "sweep.storage=postgresql://u:***@127.0.0.1:1/db"),
    (["multirun", HTTP], "tracking.uri=http://user:***@127.0.0.1:1"),
    (["worker", "sweep.study_name=nope"], "sweep.study_name=nope"),
    (["worker", PG_STORAGE, "agent.memory.limit=abc"], "agent.memory.limit"),
    (["best", "sweep.study_name=nope"], "sweep.study_name=nope"),
    (["best", "agent.nonsense=1"], "agent.nonsense"),
    (["best", f"sweep.storage=postgresql://:{SECRET}@127.0.0.1:1/db"],
     "sweep.storage=postgresql://:***@127.0.0.1:1/db"),
    (["best", "export=bad/name"], "export=bad/name"),
    (["reproduce", "best", "sweep.study_name=nope", "train.nb_steps=5"], "sweep.study_name=nope"),
    (["reproduce", RUN, STORE], f"run {RUN}"),
    (["reproduce", RUN, HTTP], "tracking.uri=http://user:***@127.0.0.1:1"),
    (["evaluate", "best", "seeds=0"], "seeds=0"),
    (["evaluate", RUN, "seeds=2", STORE], f"run {RUN}"),
    (["evaluate", "best", PG_STORAGE], "sweep.storage=postgresql://u:***@127.0.0.1:1/db"),
    (["watch", RUN, STORE], f"run {RUN}"),
    (["watch", RUN, "episodes=zero"], "episodes=zero"),
    (["watch", RUN, PG_TRACKING], "tracking.uri=postgresql://u:***@127.0.0.1:1/db"),
    # URLs of the wrong form: refused before anything is composed, printed or written
    (["train", f"tracking.uri=http:/user:{SECRET}@127.0.0.1:1"],
     "tracking.uri=http:/***@127.0.0.1:1: not a URL: a '/' missing after 'http'"),
    (["train", f"tracking.uri=http//user:{SECRET}@127.0.0.1:1"],
     "tracking.uri=http//***@127.0.0.1:1: not a URL: a ':' missing after 'http'"),
    (["train", f"tracking.uri=htp://user:{SECRET}@127.0.0.1:1"],
     "tracking.uri=htp://***@127.0.0.1:1: unknown scheme 'htp'"),
    (["train", f"tracking.uri=postgresql:/u:{SECRET}@127.0.0.1:1/db"],
     "tracking.uri=postgresql:/***@127.0.0.1:1/db: not a URL"),
    (["train", f"tracking.uri=user:{SECRET}@127.0.0.1:1"], "tracking.uri=user:***@127.0.0.1:1"),
    (["train", "--cfg", "job", f"tracking.uri=user:/{SECRET}@127.0.0.1:1"], "tracking.uri="),
    (["train", f"tracking.uri=http://u:x@{SECRET}@127.0.0.1:1"], "more than one '@'"),
    (["train", f"tracking.uri=http://u:x:{SECRET}@127.0.0.1:1"],               # a ':' is fine
     "tracking.uri=http://u:***@127.0.0.1:1: no MLflow tracking server answers"),
    (["multirun", f"sweep.storage=postgresql//u:{SECRET}@127.0.0.1:1/db"],
     "sweep.storage=postgresql//***@127.0.0.1:1/db: not a URL"),
    (["multirun", f"sweep.storage=postgresql:/u:{SECRET}@127.0.0.1:1/db"],
     "sweep.storage=postgresql:/***@127.0.0.1:1/db: not a URL"),
    (["multirun", f"sweep.storage=postgressql://u:{SECRET}@127.0.0.1:1/db"],
     "sweep.storage=postgressql://***@127.0.0.1:1/db: unknown scheme 'postgressql'"),
    (["multirun", f"sweep.storage=postgresql://u:{SECRET}/x@127.0.0.1:1/db"],
     "sweep.storage=postgresql://***@127.0.0.1:1/db: an '@' after the host"),
    (["multirun", f"sweep.storage=postgresql://u:x%40{SECRET}@127.0.0.1:1/db"],
     "sweep.storage=postgresql://u:***@127.0.0.1:1/db: cannot connect"),
    (["multirun", f"tracking.uri=http:/u:{SECRET}@127.0.0.1:1"], "tracking.uri=http:/***@"),
    (["worker", f"tracking.uri=u:{SECRET}@127.0.0.1:1"], "tracking.uri=u:***@127.0.0.1:1"),
    (["evaluate", "best", f"sweep.storage=postgresql:/u:{SECRET}@127.0.0.1:1/db"],
     "sweep.storage=postgresql:/***@"),
    (["ui", f"tracking.uri=http//u:{SECRET}@127.0.0.1:1"], "tracking.uri=http//***@"),
    (["studies", "delete", "nope", "--yes"],
     "studies delete nope: no such study in multirun/*/study.log"),
    (["studies", "delete", "nope"], "studies delete nope: no such study"),
    (["studies", "delete"], "delete: studies takes [delete NAME --yes]"),
    (["studies", "agent.lr=1"], "agent.lr=1: studies takes"),
    (["studies", PG_STORAGE], "sweep.storage=postgresql://u:***@127.0.0.1:1/db: cannot connect"),
    (["studies", "delete", "x", "--yes", "sweep.storage=sqlite:///nope.db"],
     "sweep.storage=sqlite:///nope.db: no database file there"),
    (["studies", "delete", "x", "--yes", "sweep.storage=nope.log"],
     "sweep.storage=nope.log: no journal file there"),
    (["studies", "delete", "x", "--yes", HTTP], "tracking.uri=http://user:***@127.0.0.1:1"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An existing, empty MLflow store; it must still hold no run at the end."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    client.search_experiments()  # creates the tables
    yield uri
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert not client.search_runs(experiments), "a bad command created an MLflow run"


@pytest.fixture(scope="module")
def queues(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A folder of bad ``sweep.enqueue`` files (QUEUES), beside the test's own."""
    folder = tmp_path_factory.mktemp("queues")
    for name, text in QUEUES.items():
        (folder / f"{name}.yaml").write_text(text)
    return str(folder)


def written(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_fails_safe(args: list[str], message: str, workdir: Path, store: str,
                              queues: str) -> None:
    args = [a.replace("{store}", store).replace("{queues}", queues) for a in args]
    message = message.replace("{queues}", queues)
    start = time.monotonic()
    proc = run_cli(*args, cwd=workdir, timeout=60)
    elapsed = time.monotonic() - start
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert not [p for p in written(workdir) if SECRET.encode() in p.read_bytes()]
    assert not (workdir / "multirun").exists(), "a study folder was created"
    assert not written(workdir), f"files were written: {written(workdir)}"
    assert elapsed < 15, f"took {elapsed:.1f} s"


def test_a_url_of_the_wrong_form_in_a_config_file_is_refused(tmp_path: Path) -> None:
    """Not only the command line's: a tracking URI from an experiment file is checked too."""
    import shutil

    from rltrain.config import DEFAULT_CONF_DIR, ConfigError
    from sweep.engine.settings import plan

    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    (conf / "experiment" / "typo.yaml").write_text(
        f"# @package _global_\ntracking:\n  uri: http//u:{SECRET}@127.0.0.1:1\n")
    with pytest.raises(ConfigError) as refused:
        plan(["+experiment=typo"], conf)
    assert str(refused.value).startswith("tracking.uri=http//***@127.0.0.1:1: not a URL")
    assert SECRET not in str(refused.value)
