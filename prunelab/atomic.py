"""Files that appear complete or not at all: written beside their final name, then renamed over it."""

import json
import logging
import os
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger("prunelab")


def umask() -> int:
    """This process's umask, read without changing it (another thread may be creating files meanwhile)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def shared_mode(path, directory: bool = False) -> None:
    """Gives a file or directory made by `tempfile` (owner-only) the mode a plain open() or mkdir() would have had:
    results on a cluster's shared storage are read by the group's other users and nodes as the umask allows."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


def _replace(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    os.close(fd)
    try:
        write(tmp)
        shared_mode(tmp)
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


def read_parquet_or_set_aside(path: Path, what: str, schema: pa.Schema | None = None) -> pa.Table | None:
    """The table in `path`; None when the file cannot be read (truncated by a full disk, a bad copy): it is then
    renamed `<name>.unreadable-<time>` beside itself (kept, never deleted, and no longer read), and the log says
    which file it was and that `what` it held is computed again."""
    path = Path(path)
    try:
        return pq.read_table(path, schema=schema)
    except (pa.ArrowException, OSError, ValueError) as exc:
        set_aside(path, what, f"is unreadable ({str(exc).splitlines()[0][:200]})")
        return None


def set_aside(path: Path, what: str, why: str = "goes with an unreadable file") -> Path:
    """Renames `path` to `<name>.unreadable-<time>` beside itself (kept, no longer read) and says so."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    log.warning("prunelab: %s %s; moved aside to %s, and %s it held is computed again", path, why, aside.name, what)
    return aside
