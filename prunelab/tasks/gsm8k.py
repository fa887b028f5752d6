"""GSM8K with chain of thought, answers checked with math-verify.

Chat models get lm-eval's `gsm8k_cot_llama` instruction (reason, then end with "The final answer is N"); few-shot
examples, if any, are earlier user/assistant turns. Base models get "Question: ...\\nAnswer:" completion prompts.
Few-shot answers are the dataset's worked solutions, calculator annotations (<<...>>) removed, ending the same way.
"""

import logging
import re
import threading

from math_verify import parse, verify

from prunelab.tasks.generative import SAMPLE_KEY, GenerativeTask

_INSTRUCTION = ("Given the following problem, reason and give a final answer to the problem.\nProblem: {question}\n"
                'Your response should end with "The final answer is [answer]" where [answer] is the response to the '
                "problem.")
_FINAL = re.compile(r"final answer is", re.IGNORECASE)
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


class GSM8K(GenerativeTask):
    benchmark = "gsm8k"
    primary_metric = "exact_match"
    task_metrics = ("exact_match",)
    default_max_new_tokens = 512

    def shot_answer(self, row) -> str:
        return worked_solution(row)

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
            sample = {"scored": str(answer[-1]) if answer else "", "gold": str(item.reference["short_answer"]),
                      "outcome": "correct" if ok else "wrong"}
            out.append({"exact_match": float(ok), SAMPLE_KEY: sample})
        return out
