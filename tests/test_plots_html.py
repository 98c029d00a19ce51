"""Optuna's interactive plots as HTML, on real small studies (no TensorFlow), and PNG plots
that no longer warn "Tight layout not applied"."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest

from sweep.present.plots_html import PLOTS, save_html_plots
from sweep.present.report import save_plots

ALL = [name for name, _, _ in PLOTS]


def two_params(trial: optuna.Trial) -> float:
    x = trial.suggest_float("agent.lr", 1e-4, 1e-2, log=True)
    units = trial.suggest_categorical("agent.model.units", [16, 32, 64])
    for step in (100, 200, 300):
        trial.report(units * step * x, step)
    return units * x


def one_param(trial: optuna.Trial) -> float:
    return trial.suggest_float("agent.lr", 0.0, 1.0)


def study_of(objective, n_trials: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(objective, n_trials=n_trials)
    return study


def test_every_plot_of_a_study_with_trials(tmp_path: Path) -> None:
    paths = save_html_plots(study_of(two_params, 8), tmp_path, "eval/mean_reward")
    assert [p.stem for p in paths] == ALL
    for path in paths:
        text = path.read_text()
        assert "Plotly.newPlot" in text
        assert path.stat().st_size > 1_000_000  # plotly.js inside: opens offline
    # the objective's name on the axes (JSON escapes the slash)
    assert "eval\\u002fmean_reward" in (tmp_path / "optimization_history.html").read_text()


@pytest.mark.parametrize(("objective", "n_trials", "expected"), [
    (two_params, 0, []),
    (two_params, 1, ["optimization_history", "parallel_coordinate", "slice",
                     "intermediate_values"]),
    (one_param, 4, ["optimization_history", "param_importances", "parallel_coordinate",
                    "slice"]),
])
def test_what_cannot_be_drawn_is_skipped(tmp_path: Path, objective, n_trials: int,
                                         expected: list[str]) -> None:
    paths = save_html_plots(study_of(objective, n_trials), tmp_path, "eval/mean_reward")
    assert [p.stem for p in paths] == expected


def test_all_trials_failed_or_pruned(tmp_path: Path) -> None:
    def prune(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        trial.report(1.0, 1)
        raise optuna.TrialPruned()

    study = study_of(prune, 3)
    assert [p.stem for p in save_html_plots(study, tmp_path)] == ["intermediate_values"]


def test_png_plots_of_many_trials_do_not_warn_about_tight_layout(tmp_path: Path) -> None:
    study = study_of(two_params, 40)  # 40 trials: the legend that did not fit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = save_plots(study, tmp_path, "eval/mean_reward")
    assert "intermediate_values.png" in [p.name for p in paths]
