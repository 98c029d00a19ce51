"""Run folders that two processes starting at once can never share."""

from __future__ import annotations

from pathlib import Path

MAX_SUFFIX = 10_000  # base_1 ... base_9999: more than any sweep makes in one second


def new_folder(base: Path) -> Path:
    """Create and return ``base``, or ``base_1``, ``base_2`` ... if taken: ``mkdir`` without
    ``exist_ok`` succeeds for exactly one process, so a folder is never handed out twice."""
    base.parent.mkdir(parents=True, exist_ok=True)  # the shared parent (outputs/<date>)
    for n in range(MAX_SUFFIX):
        folder = base if n == 0 else base.with_name(f"{base.name}_{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"{base}: {MAX_SUFFIX} folders of this name exist already")
