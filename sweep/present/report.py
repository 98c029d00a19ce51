"""What a sweep shows: the live status line, the top-trials table, the command to train the
best config again, and the parent MLflow run's summary (best value and params, best config
as YAML, Optuna's plots)."""

from __future__ import annotations

import contextlib
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from rltrain.config import ConfigError, compose_config, mask_url, to_yaml
from rltrain.links import link_line
from rltrain.tracking import Tracker
from sweep.engine import winner
from sweep.engine.settings import Plan
from sweep.present.plots_html import save_html_plots

TOP = 5
PLOTS = ("optimization_history", "param_importances", "parallel_coordinate",
         "intermediate_values")


def resuming(study: optuna.Study, plan: Plan, left: int, joining: bool = False) -> None:
    """One line saying whether the study is new, resumed or joined, and what is left to run."""
    s = plan.settings
    counts = _counts(study.trials)
    where = mask_url(plan.storage)
    if joining:
        print(f"study {s.study_name}: joining ({counts}); {max(left, 0)} of {s.n_trials} "
              f"trials left, {s.n_jobs} worker(s), storage {where}", file=sys.stderr)
    elif all(t.state == TrialState.WAITING for t in study.trials):  # queued ones only
        print(f"study {s.study_name}: new, {s.n_trials} trials, {s.n_jobs} worker(s), "
              f"storage {where}", file=sys.stderr)
    else:
        todo = f"{left} of {s.n_trials} trials left" if left > 0 else \
            f"all {s.n_trials} trials done (raise sweep.n_trials to run more)"
        print(f"study {s.study_name}: resuming ({counts}); {todo}, storage {where}",
              file=sys.stderr)


def _counts(trials: list[FrozenTrial]) -> str:
    names = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}
    parts = [f"{sum(t.state.name == state for t in trials)} {word}"
             for state, word in names.items()]
    return ", ".join(p for p in parts if not p.startswith("0 ")) or "no trials"


def short(key: str) -> str:
    """``agent.model.units`` -> ``model.units`` for tables and status lines."""
    return key.removeprefix("agent.")


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Monitor:
    """Polls the storage once a second: a status bar (finished of n_trials, running,
    pruned, failed, best so far) and one line per trial that ends."""

    def __init__(self, plan: Plan, invocation: str, load: Callable[[], optuna.Study],
                 interval: float = 1.0) -> None:
        self.plan, self.invocation, self.load, self.interval = plan, invocation, load, interval
        self._stop = threading.Event()
        self._seen: set[int] = set()
        self._study: optuna.Study | None = None
        self.bar: Any = None

    def __enter__(self) -> Monitor:
        self._study = self.load()
        trials = self._study.get_trials(deepcopy=False)
        self._seen = {t.number for t in trials if t.state.is_finished()}
        self.bar = tqdm(total=self.plan.settings.n_trials, desc=self.plan.settings.study_name,
                        unit="trial", file=sys.stderr, dynamic_ncols=True)
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="sweep-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.refresh()
        self.bar.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a half-written journal line: next second
                self.refresh()

    def refresh(self) -> None:
        assert self._study is not None
        trials = self._study.get_trials(deepcopy=False)
        best = best_so_far(trials, self.plan.settings.direction)
        for t in trials:
            if t.state.is_finished() and t.number not in self._seen:
                self._seen.add(t.number)
                self.bar.write(trial_line(t, best))
        finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        self.bar.n = min(finished, self.bar.total)
        self.bar.set_postfix_str(
            f"running {sum(t.state == TrialState.RUNNING for t in trials)}, "
            f"pruned {sum(t.state == TrialState.PRUNED for t in trials)}, "
            f"failed {sum(t.state == TrialState.FAIL for t in trials)}, best "
            + (f"{best.value:.1f} (trial {best.number})" if best else "-"), refresh=False)
        self.bar.refresh()


def best_so_far(trials: list[FrozenTrial], direction: str) -> FrozenTrial | None:
    """The best COMPLETE trial by objective so far, for the status bar."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not done:
        return None
    pick = max if direction == "maximize" else min
    return pick(done, key=lambda t: t.value)


def trial_line(t: FrozenTrial, best: FrozenTrial | None) -> str:
    """``trial 7 COMPLETE 412.4  model.units=64 lr=0.0012 ...`` (or the error, when failed)."""
    head = f"trial {t.number:3d} {t.state.name:<8}"
    if t.state == TrialState.FAIL:
        why = t.user_attrs.get("error", "no heartbeat: its worker is gone")
        return f"{head} {why}"[:300]
    value = f"{t.value:8.1f}" if t.value is not None else "       -"
    if t.state == TrialState.PRUNED and t.last_step is not None:
        value += f" at step {t.last_step}"
    params = " ".join(f"{short(k)}={fmt(v)}" for k, v in t.params.items())
    mark = "  * best so far" if best is not None and best.number == t.number else ""
    return f"{head} {value}{mark}  {params}"


def top_table(study: optuna.Study, plan: Plan, k: int = TOP) -> str:
    """The best ``k`` complete trials: value, final test reward, steps, time, sampled params."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    done.sort(key=lambda t: t.value, reverse=plan.settings.direction == "maximize")
    keys = list(plan.space.dimensions) or sorted({p for t in done for p in t.params})
    rows = [["rank", "trial", "value", "test", "steps", "seconds", *map(short, keys)]]
    for rank, t in enumerate(done[:k], 1):
        test = t.user_attrs.get("test_mean_reward")
        rows.append([str(rank), str(t.number), f"{t.value:.1f}",
                     "-" if test is None else f"{test:.1f}", str(t.user_attrs.get("nb_steps", "-")),
                     fmt(t.user_attrs.get("train_seconds", "-")),
                     *(fmt(t.params[key]) if key in t.params else "-" for key in keys)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
                     for row in rows)


def summary(study: optuna.Study, plan: Plan) -> FrozenTrial | None:
    """Print the top trials and how to train the best again; return the best trial."""
    s = plan.settings
    best = winner.trial_of(study)
    print(f"\nstudy {s.study_name}: {_counts(study.trials)} (objective: {s.metric}, "
          f"{s.direction})")
    if best is None:
        print("no trial completed")
        return None
    print(f"top trials:\n{top_table(study, plan)}")
    how = "the recheck's winner" if winner.standing(study) else "the best objective"
    print(f"\nbest ({how}): trial {best.number}, objective = {best.value:.2f}")
    print(f"train it again:\n  {winner.train_command(best)}")
    print(f"files: {plan.folder}/ (best_config.yaml, top_trials.txt, trials.csv, plots/)")
    return best


def log_plan(parent: Tracker, plan: Plan) -> None:
    """The parent run's params: the sweep settings, the space and the fixed overrides."""
    params: dict[str, Any] = {f"sweep.{k}": v for k, v in asdict(plan.settings).items()}
    params.update({f"search.{k}": v for k, v in plan.space.describe().items()})
    params["search"] = plan.search_name
    params["fixed"] = " ".join(plan.fixed) or "-"
    parent.log_params(params)


def finish(parent: Tracker, study: optuna.Study, plan: Plan) -> None:
    """Print the summary; record best value, params, config, table and plots in the parent."""
    best = summary(study, plan)
    folder = plan.folder
    trials = study.get_trials(deepcopy=False)
    for state in ("COMPLETE", "PRUNED", "FAIL"):
        parent.log_metric(f"trials/{state.lower()}", sum(t.state.name == state for t in trials),
                          0)
    (folder / "top_trials.txt").write_text(top_table(study, plan) + "\n")
    parent.log_artifact(folder / "top_trials.txt")
    _trials_csv(study, folder / "trials.csv", parent)
    if best is not None:
        parent.log_metric(f"best/{plan.settings.metric}", float(best.value), best.number)
        parent.log_params({f"best.{k}": v for k, v in best.params.items()})
        parent.set_tags({"best_trial": best.number,
                         "best_run_id": best.user_attrs.get("run_id", ""),
                         "best_command": winner.train_command(best)})
        _best_config(best, folder / "best_config.yaml", parent)
    for path in save_plots(study, folder / "plots", plan.settings.metric):
        parent.log_artifact(path, "plots")
    for path in save_html_plots(study, folder / "plots", plan.settings.metric):
        parent.log_artifact(path, "plots")
    parent.flush()
    if link := link_line(plan.tracking_uri, parent.run_id, "sweep"):
        print(link)


def _best_config(best: FrozenTrial, path: Path, parent: Tracker) -> None:
    try:
        cfg = compose_config(winner.retrain_overrides(best))
    except ConfigError as err:  # the config files changed since the trial ran
        print(f"warning: best config not written: {err}", file=sys.stderr)
        return
    path.write_text(f"# {winner.train_command(best)}\n{to_yaml(cfg)}")
    parent.log_artifact(path)


def _trials_csv(study: optuna.Study, path: Path, parent: Tracker) -> None:
    """``trials.csv``: the columns of sweep/present/table.py (docs/runs.md's table), a row
    per trial."""
    from sweep.present.table import trials_frame

    try:
        best = winner.trial_of(study)
        frame = trials_frame(study, best.number if best else None)
    except Exception as err:  # pandas missing, or nothing to tabulate
        print(f"warning: trials.csv not written: {err}", file=sys.stderr)
        return
    for column in frame.columns:  # an error may hold a tracking URL with a password
        if frame[column].dtype == object:
            frame[column] = frame[column].map(
                lambda v: mask_url(str(v)) if isinstance(v, str | list) else v)
    frame.to_csv(path, index=False)
    parent.log_artifact(path)


def save_plots(study: optuna.Study, folder: Path, metric: str) -> list[Path]:
    """Optuna's matplotlib plots as PNGs; a plot that cannot be drawn yet is skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vm

    from rltrain.plots import drop_crowded_legend

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PLOTS:
        plot = getattr(vm, f"plot_{name}")
        kwargs = {} if name == "intermediate_values" else {"target_name": metric}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = plot(study, **kwargs)
        except Exception as err:  # e.g. importances need two complete trials
            print(f"note: plot {name} skipped: {err}", file=sys.stderr)
            continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        drop_crowded_legend(figure)
        path = folder / f"{name}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        paths.append(path)
    return paths
