"""Where prunelab keeps converted models and extracted benchmark data."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$PRUNELAB_CACHE`, else `~/.cache/prunelab`. Created on first use."""
    root = Path(os.environ.get("PRUNELAB_CACHE", Path.home() / ".cache" / "prunelab")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root
