"""The command line and the Optuna orchestration: ``python -m sweep``."""
