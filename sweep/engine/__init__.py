"""The study engine: settings, search space, study, trials, workers, storage, recheck and
the winner. It imports neither the commands (sweep/commands/) nor the presentation
(sweep/present/)."""
