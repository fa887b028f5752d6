"""Run untrusted generated programs: each in a separate interpreter, with memory, CPU and wall-time limits, no
network, an empty temporary working directory, many at once.

A program that crashes, hangs, eats memory or kills its interpreter is a failed sample (an `Outcome`), never an
exception here. Nothing generated is ever executed in the calling process.
"""

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from prunelab.metrics.code_errors import Outcome

RUNNER = Path(__file__).with_name("runner.py")


@functools.cache
def network_namespace_prefix() -> tuple[str, ...]:
    """`unshare --net --map-root-user` where user namespaces work (no network interfaces at all for the program);
    empty where they do not (containers often forbid them): the runner's socket guard still applies."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    try:
        ok = subprocess.run([unshare, "--net", "--map-root-user", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return (unshare, "--net", "--map-root-user") if ok.returncode == 0 else ()


def run_program(program: str, timeout_s: float = 10.0, memory_mb: int = 1024, preload: Sequence[str] = ()) -> Outcome:
    """Runs one program to completion or its limits; never raises for anything the program does. `preload`:
    trusted modules imported before the guard (for test harnesses)."""
    with tempfile.TemporaryDirectory(prefix="prunelab-sandbox-") as workdir:
        cmd = [*network_namespace_prefix(), sys.executable, "-I", str(RUNNER), str(memory_mb * 2**20),
               str(int(timeout_s) + 1), ",".join(preload)]
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "PYTHONHASHSEED": "0",
               "OMP_NUM_THREADS": "1", "LANG": "C.UTF-8"}
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True, text=True)
        try:
            stdout, _ = proc.communicate(program, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return Outcome("timeout", None, f"no result within {timeout_s:g} s")
        finally:
            _kill_group(proc)  # whatever the program left running in its session
    lines = stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
        return Outcome(result["status"], result.get("exception"), result.get("message", ""))
    except (IndexError, ValueError, KeyError, TypeError):
        how = f"signal {-proc.returncode}" if proc.returncode and proc.returncode < 0 else f"exit code {proc.returncode}"
        if proc.returncode == -signal.SIGXCPU:
            return Outcome("timeout", None, "CPU time limit")
        return Outcome("failed", "Crash", f"the interpreter died ({how}) before reporting")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_programs(programs: Sequence[str], timeout_s: float = 10.0, memory_mb: int = 1024, workers: int | None = None,
                 progress: bool = False, preload: Sequence[str] = ()) -> list[Outcome]:
    """Runs many programs, `workers` at a time (default: one per CPU core); outcomes in the order given."""
    workers = workers or os.cpu_count() or 1
    run = functools.partial(run_program, timeout_s=timeout_s, memory_mb=memory_mb, preload=tuple(preload))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(run, programs), total=len(programs), desc="sandbox", unit="prog",
                         disable=not progress))
