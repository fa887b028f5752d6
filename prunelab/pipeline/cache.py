"""Whether a stage's directory holds a finished artifact of exactly this stage: `stage.json` beside its files.

`stage.json` is written (atomically) when a stage finishes: its name, key, its time, and the size and SHA-256 of every
file it produced. A stage's time is the sum of its segments (one per run that worked on it, kept beside its directory
in `<dir>.segments.json` until it finishes, since some stages replace their directory whole): a run that was stopped
ends its segment at the last file it wrote, so a stage resumed twice still reports all it cost.

A directory is reused only when `stage.json` exists, names the same key, and every listed file is there with the
same size and hash. Otherwise it is not reused, and the reason says why: never finished (a stopped run:
the stage resumes in place from what it stored), made for another key (another config), or changed since (a file
missing, truncated or altered: the directory is moved aside, kept for inspection, and the stage recomputed).
"""

import hashlib
import json
import shutil
import time
from pathlib import Path

from prunelab.atomic import write_json

MARKER = "stage.json"


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def manifest(root: Path) -> dict[str, list]:
    return {str(p.relative_to(root)): [p.stat().st_size, _digest(p)]
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MARKER}


def _last_write(root: Path, since: float) -> float:
    """When a stopped run last wrote into its stage: the newest file's mtime (results are written as they finish)."""
    times = [p.stat().st_mtime for p in root.rglob("*") if p.is_file()] if root.exists() else []
    return max([since, *times])


def segments_path(root: Path) -> Path:
    return root.with_name(f"{root.name}.segments.json")


def begin_segment(root: Path) -> None:
    """Records that a run starts working on this stage now; a segment left open by a stopped run is closed at the
    last file it wrote."""
    path = segments_path(root)
    segments = json.loads(path.read_text()) if path.exists() else []
    if segments and segments[-1].get("ended") is None:
        segments[-1] |= {"ended": _last_write(root, segments[-1]["started"]), "ended_by": "stopped (last write)"}
    write_json(path, [*segments, {"started": time.time(), "ended": None}], sort_keys=False)


def mark_done(root: Path, name: str, key: str, identity: dict | None = None) -> float:
    """Closes the running segment and writes `stage.json` (with the identity its key hashes, so that a later config
    can be told what it changed); returns the stage's seconds over all its segments."""
    path = segments_path(root)
    segments = json.loads(path.read_text())
    segments[-1] |= {"ended": time.time(), "ended_by": "finished"}
    seconds = round(sum(s["ended"] - s["started"] for s in segments), 1)
    write_json(root / MARKER, {"stage": name, "key": key, "identity": identity, "seconds": seconds,
                               "segments": segments, "files": manifest(root)})
    path.unlink()
    return seconds


def recorded_seconds(root: Path) -> float | None:
    """What a finished stage cost when it was computed (None for a stage.json written before times were kept)."""
    return json.loads((root / MARKER).read_text()).get("seconds")


def check(root: Path, key: str) -> tuple[bool, str]:
    """(reusable, why): why not, or what was verified."""
    marker = root / MARKER
    if not marker.exists():
        return False, "not finished yet" if root.exists() else "not computed yet"
    try:
        done = json.loads(marker.read_text())
        files = done["files"]
    except (ValueError, KeyError, TypeError):
        return False, f"{marker} is unreadable"
    if done.get("key") != key:
        return False, f"made from another config (key {str(done.get('key'))[:12]}, wanted {key[:12]})"
    for rel, (size, digest) in files.items():
        path = root / rel
        if not path.is_file():
            return False, f"{rel} is missing"
        if path.stat().st_size != size:
            return False, f"{rel} changed size ({path.stat().st_size} bytes, {size} when written)"
        if _digest(path) != digest:
            return False, f"{rel} changed since it was written (SHA-256 differs)"
    return True, f"{len(files)} files verified"


def what_changed(root: Path, name: str, identity: dict) -> str | None:
    """For a stage not computed yet: the fields in which it differs from the newest finished stage of the same name
    (another config's, beside it), e.g. "generation.sandbox_timeout_s"; None when there is none to compare with."""
    from prunelab.results import differences

    others = []
    for marker in root.parent.glob(f"*/{MARKER}"):
        try:
            done = json.loads(marker.read_text())
        except ValueError:
            continue
        if done.get("stage") == name and marker.parent != root and isinstance(done.get("identity"), dict):
            others.append((marker.stat().st_mtime, done["identity"]))
    if not others:
        return None
    changed = differences(max(others, key=lambda o: o[0])[1], json.loads(json.dumps(identity, default=str)))
    return ", ".join(changed[:6]) + (" ..." if len(changed) > 6 else "") if changed else None


def set_aside(root: Path) -> Path:
    """Moves a changed or foreign directory out of the way, keeping it; returns where it went."""
    aside = root.with_name(f"{root.name}.set-aside-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(str(root), aside)
    if segments_path(root).exists():  # the recomputation's time starts from nothing
        shutil.move(str(segments_path(root)), segments_path(aside))
    return aside
