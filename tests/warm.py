"""A warm ``python -m sweep``: a process that has imported the program once and forks a child
per command, so a test's command costs what the command does, not 8-10 s of imports.

Each child is a fresh process for the command (its own pid, folder, environment, stdin,
stdout and stderr, its own TensorFlow thread pools: the server imports TensorFlow but never
initialises it) and runs ``sweep.__main__.main``, what ``python -m sweep`` runs. Commands
whose test is about the process itself (signals, process groups, what is imported before
TensorFlow) start a new interpreter instead (``tests.conftest.run_python`` or ``subprocess``).

Run as ``python tests/warm.py``: it reads one JSON request per line on stdin (``argv``,
``cwd``, ``env``, ``path``, ``out``, ``err``) and answers each with the child's exit code.
"""

from __future__ import annotations

import json
import os
import sys


def preload() -> None:
    """Import what the commands import (the workers' list, and the command line), without
    running any of it."""
    import sweep.__main__  # noqa: F401
    import sweep.engine.invocation  # noqa: F401
    import sweep.engine.preload  # noqa: F401
    import sweep.present.report  # noqa: F401


def child(request: dict) -> None:
    """The command, in the forked child: never returns."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import rltrain.compat

        rltrain.compat.environment()  # what its import did in a cold process, for this env
        sys.path[:0] = request["path"]
        stdin = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err = os.open(request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for fd, target in ((stdin, 0), (out, 1), (err, 2)):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.argv = ["sweep", *request["argv"]]
        import sweep.__main__

        code = sweep.__main__.main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:  # noqa: BLE001  (a crash of the harness itself: say so)
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    preload()
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve()
