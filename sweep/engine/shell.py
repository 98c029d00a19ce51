"""Command lines as a user types them: what the program prints for its user to run next
(``train it again: python -m sweep ...``), shell-quoted and masked."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from rltrain.config import mask_url, user_conf_dir

PROG = "python -m sweep"


def command_line(command: str, args: Sequence[str]) -> str:
    """``python -m sweep COMMAND ARGS`` as a user types it (shell-quoted, masked; an empty
    COMMAND: train, unsaid), with ``--config-dir DIR`` when this process uses one."""
    folder = user_conf_dir()
    flag = ["--config-dir", str(folder)] if folder else []
    return mask_url(" ".join([PROG, *([command] if command else []),
                              *map(shlex.quote, [*flag, *args])]))
