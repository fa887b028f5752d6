"""Registries by name, imported lazily: a name maps to "module:attribute", imported only when asked for, so that
listing or validating names (configs, the CLI's help) never imports torch or a task's data libraries.

    TASKS = Registry("task", {"gsm8k": Entry("prunelab.tasks.gsm8k:GSM8K", kind="generative"), ...})
    TASKS.load("gsm8k")      # the class
    TASKS.check("gsm8q")     # ConfigError: unknown task 'gsm8q'; allowed: ...
"""

import importlib
from dataclasses import dataclass
from typing import Any

from prunelab.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    target: str  # "package.module:attribute"
    kind: str = ""  # what callers may need to know without importing (a task's kind)


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

    def entry(self, name: str) -> Entry:
        return self.entries[self.check(name)]

    def names_of_kind(self, kind: str) -> tuple[str, ...]:
        return tuple(n for n, e in self.entries.items() if e.kind == kind)

    def load(self, name: str) -> Any:
        module, _, attribute = self.entry(name).target.partition(":")
        return getattr(importlib.import_module(module), attribute)
