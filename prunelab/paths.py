"""Where prunelab keeps converted models and extracted benchmark data."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$PRUNELAB_CACHE`, else `~/.cache/prunelab`. Created on first use."""
    root = Path(os.environ.get("PRUNELAB_CACHE", Path.home() / ".cache" / "prunelab")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def tree_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a directory (links not followed)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
