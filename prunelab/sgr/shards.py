"""The corpus directory: the selected prompts, and the responses as parquet shards written atomically.

    <dir>/prompts.parquet            the selected prompts, in shard order (id, shard, messages, reference)
    <dir>/shards/shard-00003.parquet one per `shard_size` prompts, complete or absent
    <dir>/meta.json                  config, counts, hashes, chat template

A shard is written once all of its prompts are answered, so a stopped run loses at most the shards in flight and a
rerun generates only the missing ones. Every response is kept in its shard; `dropped` says why one is not used for
training ("truncated": it reached max_new_tokens; "empty"; "cut in thinking": a reasoning model still reasoning at
its thinking budget, with no answer).
"""

import hashlib
import json
import logging
from pathlib import Path

import pyarrow as pa

from prunelab.atomic import read_parquet_or_set_aside, write_parquet
from prunelab.errors import ResultsError

log = logging.getLogger(__name__)
ROW_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("shard", pa.int32()),
    ("messages", pa.string()),  # JSON: [{"role", "content"}], the prompt turns
    ("reference", pa.string()),  # the corpus's original answer, if any (the external-data baseline)
    ("response", pa.string()),
    ("finish_reason", pa.string()),  # stop | length
    ("prompt_tokens", pa.int32()),
    ("output_tokens", pa.int32()),
    ("model", pa.string()),
    ("temperature", pa.float64()),
    ("top_p", pa.float64()),
    ("max_new_tokens", pa.int32()),
    ("seed", pa.int64()),
    ("dropped", pa.string()),  # null: used for training
    # a reasoning model's (null in rows of a model that does not reason, and in shards written before them): the
    # response is then its answer alone
    ("reasoning", pa.string()),
    ("thinking_tokens", pa.int32()),
    ("cut_in_thinking", pa.bool_()),
])


def reasoning_columns(reasoning: str | None, thinking_tokens: int, cut: bool, budgets) -> dict:
    """A row's reasoning columns: null where the model was not asked to reason (`budgets` None)."""
    if budgets is None:
        return {"reasoning": None, "thinking_tokens": None, "cut_in_thinking": None}
    return {"reasoning": reasoning or "", "thinking_tokens": int(thinking_tokens), "cut_in_thinking": bool(cut)}


def drop_reason(finish_reason: str, response: str, cut_in_thinking: bool = False) -> str | None:
    if cut_in_thinking:
        return "cut in thinking"
    if finish_reason == "length":
        return "truncated"
    if not response.strip():
        return "empty"
    return None


class CorpusShards:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.dir = self.root / "shards"

    def path(self, shard: int) -> Path:
        return self.dir / f"shard-{shard:05d}.parquet"

    def done(self) -> set[int]:
        """The shards stored and readable (an unreadable one is set aside, and generated again)."""
        files = sorted(self.dir.glob("shard-*.parquet")) if self.dir.exists() else []
        return {int(p.stem.split("-")[1]) for p in files
                if read_parquet_or_set_aside(p, "the responses", ROW_SCHEMA) is not None}

    def write(self, shard: int, rows: list[dict]) -> Path:
        rows = sorted(rows, key=lambda r: r["id"])
        path = write_parquet(self.path(shard), pa.Table.from_pylist(rows, schema=ROW_SCHEMA))
        log.debug("stored shard %d (%d responses)", shard, len(rows))
        return path

    def read(self) -> pa.Table:
        files = sorted(self.dir.glob("shard-*.parquet")) if self.dir.exists() else []
        if not files:
            return ROW_SCHEMA.empty_table()
        tables = [t for f in files if (t := read_parquet_or_set_aside(f, "the responses", ROW_SCHEMA)) is not None]
        return pa.concat_tables(tables) if tables else ROW_SCHEMA.empty_table()


def read_corpus(root: str | Path, responses: str = "sgr") -> tuple[list[dict], dict]:
    """The rows of a finished corpus directory that training on `responses` uses, and its meta.json.

    sgr: the responses not dropped. reference: every prompt with an original answer, whatever the base model did
    with it (the external-data baseline is the corpus as published)."""
    root = Path(root)
    meta_path = root / "meta.json"
    if not meta_path.exists():
        raise ResultsError(f"{str(root)!r} is not an SGR corpus directory (no meta.json; make one with prunelab sgr)")
    meta = json.loads(meta_path.read_text())
    if meta.get("stage") != "sgr":
        raise ResultsError(f"{str(root)!r} holds a {meta.get('stage')} run, not an SGR corpus (prunelab sgr)")
    if not meta.get("complete"):
        raise ResultsError(f"SGR corpus {str(root)!r} is unfinished ({meta.get('shards_done')} of "
                           f"{meta.get('shards')} shards); rerun prunelab sgr with its config to finish it")
    rows = CorpusShards(root).read().to_pylist()
    rows = [r for r in rows if (r["dropped"] is None if responses == "sgr" else bool(r["reference"]))]
    return sorted(rows, key=lambda r: (r["shard"], r["id"])), meta


def corpus_hash(rows: list[dict]) -> str:
    """Identifies the training data of a corpus: ids, prompts and responses of the kept rows, in order."""
    digest = hashlib.sha256()
    for r in sorted(rows, key=lambda r: r["id"]):
        digest.update(json.dumps([r["id"], r["messages"], r["response"]]).encode())
    return digest.hexdigest()
