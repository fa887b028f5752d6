"""XSUM: a one-sentence summary of a BBC article, scored with ROUGE-1/2/L F-measure (rouge-score, Porter stemmer),
against the reference summary."""

from rouge_score import rouge_scorer

from prunelab.tasks.generative import SAMPLE_KEY, GenerativeTask

_INSTRUCTION = "Summarize the following article in one sentence.\n\nArticle: {document}"


class XSum(GenerativeTask):
    benchmark = "xsum"
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
