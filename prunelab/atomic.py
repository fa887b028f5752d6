"""Files that appear complete or not at all: written beside their final name, then renamed over it."""

import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def _replace(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return _replace(Path(path), lambda tmp: Path(tmp).write_text(text))


def write_json(path: Path, data, sort_keys: bool = True) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")


def write_parquet(path: Path, table: pa.Table) -> Path:
    return _replace(Path(path), lambda tmp: pq.write_table(table, tmp))
