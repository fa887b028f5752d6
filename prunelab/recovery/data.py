"""Training examples in TRL's conversational prompt-completion form: the loss falls on the assistant turn only, and
the template's end-of-turn token is inside the completion, so the model learns to stop. Examples longer than
`max_length` are left out (and counted), never truncated: a cut-off answer would teach the model to stop mid-way,
or never."""

import json

from prunelab.errors import DataError


def training_examples(rows: list[dict], responses: str) -> tuple[list[dict], int]:
    """(examples, rows without that response): `responses` is "sgr" (the base model's answers) or "reference"
    (the corpus's original answers, the external-data baseline)."""
    out, missing = [], 0
    for r in rows:
        answer = r["response"] if responses == "sgr" else r["reference"]
        if not answer or not answer.strip():
            missing += 1
            continue
        out.append({"id": r["id"], "prompt": json.loads(r["messages"]),
                    "completion": [{"role": "assistant", "content": answer}]})
    return out, missing


def example_length(tokenizer, example: dict) -> int:
    ids = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=True, return_dict=True)
    return len(ids["input_ids"])


def fit_length(examples: list[dict], tokenizer, max_length: int, corpus: str) -> tuple[list[dict], int]:
    """(examples of at most `max_length` tokens, how many were longer)."""
    kept = [e for e in examples if example_length(tokenizer, e) <= max_length]
    if not kept:
        raise DataError(f"no training example of corpus {corpus!r} fits training.max_length={max_length} tokens "
                        f"({len(examples)} examples); raise max_length")
    return kept, len(examples) - len(kept)
