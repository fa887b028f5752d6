"""The results store: one parquet file per (task, candidate, unit of items), written atomically.

A candidate is a typed removed-layer tuple (the base model is `()`), optionally with a label for a model that is
not the base with layers removed (`prunelab eval` stores the evaluated checkpoint as "model"). Rows are long-form
(model, task, candidate, removed, item_id, metric, value), so tasks with different metrics share one table. A file
appears complete or not at all (written beside its final name, then renamed), so a stopped run loses at most the
units in flight, and a rerun skips every (task, candidate, item) already present.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from prunelab.atomic import read_parquet_or_set_aside, set_aside, write_json, write_parquet
from prunelab.errors import ResultsError

log = logging.getLogger(__name__)
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


@dataclass(frozen=True, order=True)
class Candidate:
    """What is evaluated: the loaded model with `removed` layers dropped, or a `label`led model of its own."""

    removed: tuple[int, ...] = ()
    label: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "removed", tuple(sorted(int(x) for x in self.removed)))

    @property
    def name(self) -> str:
        """How tables and directories call it: base, drop-3, drop-1+5, or the label."""
        if self.label:
            return self.label
        return "base" if not self.removed else "drop-" + "+".join(str(i) for i in self.removed)

    @property
    def is_base(self) -> bool:
        return not self.removed and self.label in (None, "base")

    @property
    def single_layer(self) -> int | None:
        """The one layer removed (a sweep's candidate), or None."""
        return self.removed[0] if len(self.removed) == 1 and self.label is None else None

    @classmethod
    def parse(cls, name: str) -> "Candidate":
        """The candidate that tables and directories call `name`: base, drop-3, drop-1+5, or a label."""
        if name == "base":
            return cls()
        if name.startswith("drop-"):
            try:
                return cls(tuple(int(x) for x in name.removeprefix("drop-").split("+")))
            except ValueError:
                pass  # a label that only looks like one
        return cls(label=name)


BASE = Candidate()


def item_rows(table: pa.Table):
    """A store's rows (`ResultsStore.read()`) as a DataFrame, each (task, candidate, item, metric) once: an item can
    be stored twice if a resumed run cut units differently (another batch_tokens)."""
    return table.to_pandas().drop_duplicates(["task", "candidate", "item_id", "metric"], keep="last")


def _unit_key(ids: list[str]) -> str:
    return hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]


def differences(old, new, path: str = "") -> list[str]:
    """Dotted paths where two JSON values differ (a list that changed length differs as a whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old or key not in new:
                out.append(sub)
            else:
                out += differences(old[key], new[key], sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in differences(a, b, f"{path}.{i}")]
    return [] if old == new else [path or "(the whole experiment)"]


def _text_where_text(tables: list[pa.Table]) -> list[pa.Table]:
    """A column that is text in some files is text in all: records once made through pandas held a missing text
    (an item without a sample) as NaN, a float, which no text column merges with."""
    text = {f.name for t in tables for f in t.schema if pa.types.is_string(f.type)}
    out = []
    for t in tables:
        for name in text & set(t.column_names):
            if not pa.types.is_string(t.schema.field(name).type):
                values = [None if v is None or v != v else str(v) for v in t[name].to_pylist()]  # v != v: NaN
                t = t.set_column(t.schema.get_field_index(name), name, pa.array(values, pa.string()))
        out.append(t)
    return out


class ResultsStore:
    def __init__(self, root: str | Path, model: str = ""):
        self.root = Path(root)
        self.model = model
        self.results = self.root / "results"

    def check_claim(self, identity: dict) -> None:
        """Refuses a directory that belongs to another experiment; writes nothing."""
        marker = self.root / EXPERIMENT_FILE
        if not marker.exists():
            return
        existing = json.loads(marker.read_text())
        wanted = json.loads(json.dumps(identity))
        if existing != wanted:
            diff = differences(existing, wanted)
            meta = self.root / "meta.json"
            holds = f"; it holds a {json.loads(meta.read_text())['stage']} run" if meta.exists() else ""
            raise ResultsError(
                f"results directory {str(self.root)!r} belongs to another experiment (differs in: "
                f"{', '.join(diff[:8])}{' ...' if len(diff) > 8 else ''}{holds}); choose another output_dir or "
                "delete that directory"
            )

    def claim(self, identity: dict) -> None:
        """Binds the directory to an experiment, or refuses one that belongs to another. Call it only after the
        whole input is validated: a claimed directory refuses any other experiment."""
        self.check_claim(identity)
        marker = self.root / EXPERIMENT_FILE
        if not marker.exists():
            write_json(marker, identity)

    def write(self, task: str, candidate: Candidate, rows: list[tuple[str, dict[str, float]]]) -> Path:
        """Writes the metrics of some items of one (task, candidate) atomically; returns the file."""
        n = sum(len(m) for _, m in rows)
        table = pa.table(
            {
                "model": [self.model] * n,
                "task": [task] * n,
                "candidate": [candidate.name] * n,
                "removed": [list(candidate.removed)] * n,
                "item_id": [item_id for item_id, m in rows for _ in m],
                "metric": [k for _, m in rows for k in m],
                "value": [float(v) for _, m in rows for v in m.values()],
            },
            schema=SCHEMA,
        )
        path = write_parquet(self.results / task / candidate.name / f"{_unit_key([i for i, _ in rows])}.parquet",
                             table)
        log.debug("stored results %s %s (%d items)", task, candidate.name, len(rows))
        return path

    def copy_candidate(self, source: "ResultsStore", which: str, candidate: Candidate,
                       identity: dict) -> dict[str, list[str]]:
        """Copies the rows (and generations) of candidate `which` in `source` into this store as `candidate`, for
        the (task, item) pairs this store does not hold for it yet; returns task -> the item ids copied. The store
        is claimed for `identity` when there is something to copy (refused before anything is written if it belongs
        to another experiment)."""
        self.check_claim(identity)
        import pyarrow.compute as pc

        held = {(task, item) for task, c, item in self.done() if c == candidate}
        rows = item_rows(source.read())
        fresh = [(t, i) not in held for t, i in zip(rows.task, rows.item_id)]
        rows = rows[(rows.candidate == which).to_numpy() & np.array(fresh, dtype=bool)]
        if not rows.empty:
            self.claim(identity)
        copied = {}
        for task, group in rows.groupby("task", sort=False):
            items = [(str(i), dict(zip(g["metric"], g["value"]))) for i, g in group.groupby("item_id", sort=False)]
            self.write(task, candidate, items)
            copied[task] = [i for i, _ in items]
        generations = source.generations()
        if generations is not None:  # in arrow, not pandas: a missing text (no sample) must stay null, never NaN
            table = generations.filter(pc.equal(generations["candidate"], which))
            for task, ids in copied.items():
                group = table.filter(pc.and_(pc.equal(table["task"], task), pc.is_in(table["item_id"], pa.array(ids))))
                if group.num_rows:
                    self.write_generations(task, candidate, group.drop_columns(["model", "task", "candidate"])
                                           .to_pylist())
        return copied

    def write_generations(self, task: str, candidate: Candidate, records: list[dict]) -> Path:
        """Records every generation of some items (prompt, output, finish reason, token counts, latency) beside
        their metrics, under generations/<task>/<candidate>/."""
        table = pa.Table.from_pylist([{"model": self.model, "task": task, "candidate": candidate.name, **r}
                                      for r in records])
        unit = _unit_key([r["item_id"] for r in records])
        return write_parquet(self.root / "generations" / task / candidate.name / f"{unit}.parquet", table)

    def generations(self) -> pa.Table | None:
        """Every stored generation, one per (task, candidate, item): where an item was generated again after its
        metrics were lost (in a unit split otherwise, `plan.spread`), the newest file's. A file that cannot be read
        is set aside (its items generate again)."""
        files = sorted(p for p in (self.root / "generations").rglob("*.parquet") if not p.name.startswith("."))
        read = [(p, t) for p in files if (t := read_parquet_or_set_aside(p, "the generations")) is not None]
        seen: set = set()
        for i in sorted(range(len(read)), key=lambda i: -read[i][0].stat().st_mtime_ns):  # newest first
            keep = []
            for key in zip(*(read[i][1][c].to_pylist() for c in ("task", "candidate", "item_id"))):
                keep.append(key not in seen)
                seen.add(key)
            if not all(keep):
                read[i] = (read[i][0], read[i][1].filter(pa.array(keep)))
        tables = [t for _, t in read]  # in the files' order, as before
        # files written before a column existed lack it (null there)
        return pa.concat_tables(_text_where_text(tables), promote_options="default") if tables else None

    def read(self) -> pa.Table:
        """Every stored metric; a file that cannot be read is set aside (its items are computed again)."""
        files = sorted(p for p in self.results.rglob("*.parquet") if not p.name.startswith("."))
        tables = [t for p in files if (t := read_parquet_or_set_aside(p, "the results", SCHEMA)) is not None]
        return pa.concat_tables(tables) if tables else SCHEMA.empty_table()

    def _generations_readable(self) -> None:
        """A generations file whose footer cannot be read is set aside with the metrics file of the same unit (same
        task, candidate and items): the metrics were computed from those generations, so both are computed again."""
        root = self.root / "generations"
        for path in sorted(root.rglob("*.parquet")) if root.exists() else []:
            if path.name.startswith("."):
                continue
            try:
                pq.read_metadata(path)
            except (pa.ArrowException, OSError, ValueError) as exc:
                set_aside(path, "the generations", f"is unreadable ({str(exc).splitlines()[0][:200]})")
                metrics = self.results / path.relative_to(root)
                if metrics.exists():
                    set_aside(metrics, "the metrics computed from them")


    def done(self) -> set[tuple[str, Candidate, str]]:
        """(task, candidate, item_id) triples already stored."""
        self._generations_readable()
        t = self.read().select(["task", "candidate", "removed", "item_id"]).to_pydict()
        out = set()
        for task, name, removed, item_id in zip(t["task"], t["candidate"], t["removed"], t["item_id"]):
            candidate = Candidate(tuple(removed))
            out.add((task, candidate if candidate.name == name else Candidate(tuple(removed), name), item_id))
        return out
