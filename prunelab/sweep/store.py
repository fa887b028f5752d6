"""The results store: one parquet file per (task, candidate, unit of items), written atomically.

Rows are long-form (model, task, candidate, removed, item_id, metric, value), so tasks with different metrics share one
table. A file appears complete or not at all (written beside its final name, then renamed), so a stopped sweep loses
at most the units in flight, and a rerun skips every (task, candidate, item) already present.
"""

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from prunelab.atomic import write_json, write_parquet
from prunelab.errors import ResultsError

SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("task", pa.string()),
        ("candidate", pa.string()),
        ("removed", pa.list_(pa.int32())),
        ("item_id", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
    ]
)
EXPERIMENT_FILE = "experiment.json"


def candidate_name(removed: tuple[int, ...]) -> str:
    return "base" if not removed else "drop-" + "+".join(str(i) for i in sorted(removed))


class ResultsStore:
    def __init__(self, root: str | Path, model: str = ""):
        self.root = Path(root)
        self.model = model
        self.results = self.root / "results"

    def claim(self, identity: dict, resolved_config: dict) -> None:
        """Binds the directory to an experiment, or refuses one that belongs to another."""
        marker = self.root / EXPERIMENT_FILE
        if marker.exists():
            existing = json.loads(marker.read_text())
            if existing != json.loads(json.dumps(identity)):
                diff = sorted(k for k in set(existing) | set(identity) if existing.get(k) != identity.get(k))
                raise ResultsError(
                    f"results directory {str(self.root)!r} belongs to another experiment (differs in: "
                    f"{', '.join(diff)}); choose another output_dir or delete that directory"
                )
        else:
            write_json(marker, identity)
        write_json(self.root / "config.json", resolved_config)

    def write(self, task: str, removed: tuple[int, ...], rows: list[tuple[str, dict[str, float]]],
              candidate: str | None = None) -> Path:
        """Writes the metrics of some items of one (task, candidate) atomically; returns the file. The candidate is
        named after the removed layers unless `candidate` names it."""
        candidate = candidate or candidate_name(removed)
        ids = [item_id for item_id, _ in rows]
        unit = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]
        n = sum(len(m) for _, m in rows)
        table = pa.table(
            {
                "model": [self.model] * n,
                "task": [task] * n,
                "candidate": [candidate] * n,
                "removed": [list(removed)] * n,
                "item_id": [item_id for item_id, m in rows for _ in m],
                "metric": [k for _, m in rows for k in m],
                "value": [float(v) for _, m in rows for v in m.values()],
            },
            schema=SCHEMA,
        )
        return write_parquet(self.results / task / candidate / f"{unit}.parquet", table)

    def write_generations(self, task: str, candidate: str, records: list[dict]) -> Path:
        """Records every generation of some items (prompt, output, finish reason, token counts, latency) beside
        their metrics, under generations/<task>/<candidate>/."""
        unit = hashlib.sha1("\n".join(r["item_id"] for r in records).encode()).hexdigest()[:16]
        table = pa.Table.from_pylist([{"model": self.model, "task": task, "candidate": candidate, **r} for r in records])
        return write_parquet(self.root / "generations" / task / candidate / f"{unit}.parquet", table)

    def generations(self) -> pa.Table | None:
        files = sorted(p for p in (self.root / "generations").rglob("*.parquet") if not p.name.startswith("."))
        return pa.concat_tables(pq.read_table(p) for p in files) if files else None

    def read(self) -> pa.Table:
        files = sorted(p for p in self.results.rglob("*.parquet") if not p.name.startswith("."))
        if not files:
            return SCHEMA.empty_table()
        return ds.dataset([str(p) for p in files], schema=SCHEMA, format="parquet").to_table()

    def done(self) -> set[tuple[str, str, str]]:
        """(task, candidate, item_id) triples already stored."""
        t = self.read()
        return set(zip(t["task"].to_pylist(), t["candidate"].to_pylist(), t["item_id"].to_pylist()))
