"""A generative task written outside prunelab, as another package would write one: its own rows, prompt, scoring
and test texts. `tests/test_task_plugin.py` registers it and runs it through eval and the overlap check."""

from prunelab.tasks.generative import SAMPLE_KEY, GenerativeTask

SENTENCES = [
    "The lighthouse keeper counted forty-two ships before the storm arrived.",
    "A small orange cat slept on the warm stones of the old harbour wall.",
    "Seven violins played the same melody in seven different rooms at once.",
    "The bakery on the corner sells bread shaped like the letters of the alphabet.",
    "Every winter the river froze so hard that the children skated to school.",
    "An astronomer named her telescope after the grandmother who bought it.",
]


class RepeatSentence(GenerativeTask):
    name = "repeat_sentence"
    primary_metric = "exact"
    task_metrics = ("exact", "first_word")
    default_max_new_tokens = 24
    source = "tests/plugin_task.py"

    def load_rows(self) -> list[dict]:
        return [{"id": str(i), "sentence": s} for i, s in enumerate(SENTENCES)]

    def test_texts(self) -> list[str]:
        return list(SENTENCES)

    def shot_answer(self, row) -> str:
        return row["sentence"]

    def prompt(self, row, shots):
        ask = f"Repeat this sentence exactly: {row['sentence']}"
        return [("user", ask)], f"{ask}\nSentence:"

    def score_outputs(self, items, generations, progress):
        out = []
        for item, gen in zip(items, generations):
            want, got = item.reference["sentence"], gen.text.strip()
            out.append({"exact": float(got == want), "first_word": float(got.split()[:1] == want.split()[:1]),
                        SAMPLE_KEY: {"scored": got, "gold": want, "outcome": "exact" if got == want else "differs"}})
        return out
