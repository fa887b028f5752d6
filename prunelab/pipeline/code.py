"""Code in the stage key: each stage declares a code version (`StageEntry.code_version`), bumped when a change to the
code it runs moves its numbers; the pipeline's stage key holds it, so such a change recomputes the stage and
everything downstream, and a change that moves nothing (a refactor, a message, a comment) reuses what is stored.

Whether a change moves numbers is a judgement the code cannot make, so it is forced instead: `code_lock.json` (beside
this module) records, per stage, its version and the digest of the source it runs, and a test fails when the digest
changes and the lock does not. The author then either bumps the stage's version (its numbers change) or records the
new digest under the same version (they do not):

    python -m prunelab.pipeline.code            # which stages' code changed since the lock, and their modules
    python -m prunelab.pipeline.code record     # writes the lock: the current digests, the registry's versions

What a stage runs: the modules reachable from its entry module by imports (those inside functions too) and by the
registries' lazy "prunelab.module:Name" entries, with their packages' `__init__`s. The digest hashes each module's
syntax tree without docstrings, so comments, docstrings and formatting do not count. A version-1 stage adds nothing
to its key (the keys of everything computed before versions existed stay valid).
"""

import ast
import copy
import functools
import hashlib
import json
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent  # prunelab/
LOCK = Path(__file__).with_name("code_lock.json")
LAZY_ENTRY = re.compile(r"^(prunelab(?:\.\w+)+):\w+$")  # a registry's lazy entry, "prunelab.module:Name"


def module_file(name: str) -> Path | None:
    """The source file of prunelab module `name`, or None (a name that is not a module: a function, a class)."""
    parts = name.split(".")[1:]
    base = PACKAGE.joinpath(*parts) if parts else PACKAGE
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@functools.cache
def _parsed(path: Path, mtime_ns: int) -> tuple[ast.AST, str]:
    """A module's syntax tree and its dump without docstrings (what the digest hashes), once per file version."""
    tree = ast.parse(path.read_text())
    return tree, _dump(copy.deepcopy(tree))  # a copy: the docstrings go from it, the imports are read from the tree


def normalized(source: str) -> str:
    """What the digest hashes of a module's source: its syntax tree without docstrings (so without comments and
    formatting either)."""
    return _dump(ast.parse(source))


def _dump(tree: ast.AST) -> str:
    return ast.dump(_without_docstrings(tree), include_attributes=False)


def parsed(name: str) -> tuple[ast.AST, str]:
    path = module_file(name)
    return _parsed(path, path.stat().st_mtime_ns)


def _imports(tree: ast.AST) -> set[str]:
    """prunelab modules a module's source names: imports anywhere in it, and lazy registry entries."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("prunelab"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("prunelab") and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from package import submodule`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (m := LAZY_ENTRY.match(node.value)):
            found.add(m.group(1))
    return found


def modules_of(entry: str) -> list[str]:
    """Every prunelab module that module `entry` can run, itself and its packages included, sorted."""
    seen, todo = set(), [entry]
    while todo:
        name = todo.pop()
        if name in seen or module_file(name) is None:
            continue
        seen.add(name)
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        todo.extend(parents)
        todo.extend(_imports(parsed(name)[0]))
    return sorted(seen)


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value,
                                                                                                    str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def source_digest(modules: list[str]) -> str:
    """SHA-256 of the modules' syntax trees, docstrings and comments left out."""
    h = hashlib.sha256()
    for name in sorted(modules):
        h.update(name.encode() + b"\0" + parsed(name)[1].encode() + b"\0")
    return h.hexdigest()


def stage_code(kind: str) -> dict:
    """A stage's code version (from the registry) and the digest of what it runs now."""
    from prunelab.stages.registry import STAGES

    entry = STAGES.get(kind)
    return {"version": entry.code_version, "digest": source_digest(modules_of(entry.module))}


def key_part(version: int) -> dict:
    """What a stage's code version adds to its key: itself, where it is past 1."""
    return {} if version == 1 else {"code_version": version}


def lock_differences() -> list[str]:
    """Stages whose code changed since `code_lock.json` without the lock saying what that means, in words."""
    from prunelab.stages.registry import STAGES

    lock = json.loads(LOCK.read_text()) if LOCK.exists() else {}
    out = []
    for entry in STAGES:
        now, locked = stage_code(entry.kind), lock.get(entry.kind)
        if locked != now:
            out.append(f"{entry.kind}: locked {locked}, now {now}")
    return out


def record() -> dict:
    from prunelab.atomic import write_json
    from prunelab.stages.registry import STAGES

    lock = {entry.kind: stage_code(entry.kind) for entry in STAGES}
    write_json(LOCK, lock)
    return lock


def main(argv: list[str]) -> int:
    if argv[:1] == ["record"]:
        for kind, code in record().items():
            print(f"{kind}: version {code['version']}, digest {code['digest'][:12]}")
        return 0
    changed = lock_differences()
    print("\n".join(changed) if changed else "every stage's code is as code_lock.json records")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
