"""Registries by name, imported lazily: a name maps to an entry naming "module:attribute", imported only when asked
for, so that listing or validating names (configs, the CLI's help) never imports torch or a task's data libraries.
What callers must know of an entry without importing it is a field of the registry's own entry class (a task's
kind, a strategy's needs, a backend's input), never a shared, loosely named one.

    TASKS = Registry("task", {"gsm8k": TaskEntry("prunelab.tasks.gsm8k:GSM8K", kind="generative"), ...})
    TASKS.load("gsm8k")      # the class
    TASKS.check("gsm8q")     # ConfigError: unknown task 'gsm8q'; allowed: ...
    TASKS.register("echo", TaskEntry("mypackage.echo:Echo", kind="generative"))   # a task from another package
"""

import importlib
from dataclasses import dataclass
from typing import Any

from prunelab.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    target: str  # "package.module:attribute"


class Registry:
    def __init__(self, what: str, entries: dict[str, Entry]):
        self.what = what
        self.entries = dict(entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def check(self, name: str) -> str:
        if name not in self.entries:
            raise ConfigError(f"unknown {self.what} {name!r}; allowed: {', '.join(self.entries)}")
        return name

    def entry(self, name: str) -> Any:
        return self.entries[self.check(name)]

    def names_where(self, **fields: Any) -> tuple[str, ...]:
        """The names whose entries have these field values, e.g. `TASKS.names_where(kind="generative")`."""
        return tuple(n for n, e in self.entries.items() if all(getattr(e, k) == v for k, v in fields.items()))

    def register(self, name: str, entry: Entry) -> None:
        """Adds an entry (a plugin from another package, or a test's). A name already taken is refused: replacing
        a built-in would change what stored results mean."""
        if not isinstance(entry, type(next(iter(self.entries.values()), entry))):
            raise ConfigError(f"{self.what} {name!r}: expected a {type(next(iter(self.entries.values()))).__name__}, "
                              f"got {type(entry).__name__}")
        if name in self.entries and self.entries[name] != entry:
            raise ConfigError(f"{self.what} {name!r} is registered already ({self.entries[name].target})")
        self.entries[name] = entry

    def unregister(self, name: str) -> None:
        self.entries.pop(self.check(name))

    def load(self, name: str) -> Any:
        return load_target(self.entry(name).target)


def load_target(target: str) -> Any:
    """The attribute a "module:attribute" string names, its module imported now."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
