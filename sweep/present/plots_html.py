"""Optuna's interactive (plotly) plots of a study, as HTML files MLflow previews in place.

Each file embeds plotly.js (about 5 MB), so it opens offline and inside MLflow's artifact
viewer. A plot that cannot be drawn yet (no complete trial, importances of fewer than two
trials, a contour of one parameter, no intermediate values) is skipped, never raised.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

# (file name, optuna.visualization function, whether it takes the objective's name)
PLOTS: tuple[tuple[str, str, bool], ...] = (
    ("optimization_history", "plot_optimization_history", True),
    ("param_importances", "plot_param_importances", True),
    ("parallel_coordinate", "plot_parallel_coordinate", True),
    ("slice", "plot_slice", True),
    ("contour", "plot_contour", True),
    ("intermediate_values", "plot_intermediate_values", False),
)


def _draw(plot: Callable[..., Any], study: optuna.Study, kwargs: dict[str, Any]) -> Any:
    """The figure, with Optuna's "cannot draw" log lines and warnings kept off the console."""
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return plot(study, **kwargs)
    finally:
        logger.setLevel(level)


def _drawn(figure: Any) -> bool:
    """Whether a figure shows data (Optuna returns empty traces when it cannot draw)."""
    for trace in figure.data:
        for key in ("x", "y", "z", "dimensions"):
            values = getattr(trace, key, None)
            if values is not None and len(values) and any(v is not None for v in values):
                return True
    return False


def _enough(name: str, study: optuna.Study) -> bool:
    """Complete trials a plot needs: importances of a single trial are a meaningless 50/50;
    intermediate values also show pruned trials."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return len(complete) >= {"param_importances": 2, "intermediate_values": 0}.get(name, 1)


def save_html_plots(study: optuna.Study, folder: Path, metric: str = "") -> list[Path]:
    """Write ``<folder>/<plot>.html`` for each plot that can be drawn; return their paths.

    ``metric`` names the objective on the axes (Optuna's "Objective Value" when empty).
    """
    from optuna import visualization

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, function, takes_target in PLOTS:
        kwargs = {"target_name": metric} if takes_target and metric else {}
        if not _enough(name, study):
            continue
        try:
            figure = _draw(getattr(visualization, function), study, kwargs)
            if not _drawn(figure):
                continue
            path = folder / f"{name}.html"
            figure.write_html(path, include_plotlyjs=True, full_html=True)
        except Exception as err:  # e.g. importances need two complete trials
            print(f"note: interactive plot {name} skipped: {type(err).__name__}: {err}"[:300],
                  file=sys.stderr)
            continue
        paths.append(path)
    return paths
