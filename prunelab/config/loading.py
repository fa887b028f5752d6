"""Reading a stage config: YAML files with `extends:` (a path relative to the file: mappings merge key by key,
anything else is replaced), `a.b=value` overrides from the command line, and errors that name the field."""

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from prunelab.errors import ConfigError


def _apply_override(data: dict, override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form a.b=value")
    key, raw = override.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: value is not valid YAML ({exc})") from exc
    set_key(data, key, value, f"override {override!r}")


def set_key(data: dict, key: str, value: Any, source: str, where_present: bool = False) -> None:
    """Sets the dotted `key` (a.b, a.0.b for list items, a.*.b for every item) of `data` to `value`; sections on the
    way are made, unless `where_present` (then a key whose section is absent is left unset)."""
    parts = key.split(".")

    def walk(node: Any, i: int) -> None:
        part, last = parts[i], i == len(parts) - 1
        where = ".".join(parts[:i + 1])
        if isinstance(node, list):
            if part == "*":
                indices = range(len(node))
            elif part.isdigit() and int(part) < len(node):
                indices = [int(part)]
            else:
                raise ConfigError(f"{source}: {where} is not an index of a list of {len(node)}")
            for j in indices:
                if last:
                    node[j] = value
                else:
                    walk(node[j], i + 1)
        elif isinstance(node, dict):
            if last:
                node[part] = value
            elif node.get(part) is not None:
                walk(node[part], i + 1)
            elif not where_present:
                node[part] = {}
                walk(node[part], i + 1)
        else:
            raise ConfigError(f"{source}: {'.'.join(parts[:i])} is a value, not a section")

    walk(data, 0)


def format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed)"
        elif err["type"] == "literal_error":
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"  {where}: {msg}")
    return f"invalid config {source}:\n" + "\n".join(lines)


def parse_config(data: Any, overrides: list[str] = (), source: str = "<dict>", cls=None):
    """A config from a mapping and overrides: of class `cls`, or (None) of the stage its `kind:` names."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping, got {type(data).__name__}")
    if cls is None:
        from prunelab.config import STAGE_CONFIGS

        kind = data.get("kind")
        if kind not in STAGE_CONFIGS:
            raise ConfigError(f"invalid config {source}: kind is {kind!r}; it must name a stage, one of "
                              f"{', '.join(STAGE_CONFIGS)}" if kind is not None else
                              f"invalid config {source}: it has no kind; set kind to one of {', '.join(STAGE_CONFIGS)}")
        cls = STAGE_CONFIGS[kind]
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy of plain data
    for override in overrides:
        _apply_override(data, override)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, source)) from None


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_config_file(path: str | Path, _seen: tuple = ()) -> dict:
    """A config file's mapping, with what it `extends` merged in."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    if path.resolve() in _seen:
        raise ConfigError(f"config file {str(path)!r} extends itself (through {', '.join(map(str, _seen))})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {str(path)!r}: the top level must be a mapping, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"invalid config {str(path)!r}: extends must be a path to another config file")
    return _merge(read_config_file(path.parent / parent, (*_seen, path.resolve())), data)


def config_kind(data: dict, source: str, kinds: dict) -> str:
    kind = data.get("kind")
    if kind not in kinds:
        raise ConfigError(f"invalid config {source}: kind is {kind!r}; allowed: {', '.join(kinds)} (the stage the "
                          "file is for)")
    return kind


def load_config(path: str | Path, overrides: list[str] = (), cls=None, data: dict | None = None):
    """A stage config from a YAML file (its `kind` picks the class; `cls`, if given, must match it)."""
    from prunelab.config import STAGE_CONFIGS

    data = read_config_file(path) if data is None else data
    source = repr(str(path))
    if cls is not None and "kind" not in data:
        data = {**data, "kind": cls.model_fields["kind"].default}
    kind = config_kind(data, source, STAGE_CONFIGS)
    if cls is not None and STAGE_CONFIGS[kind] is not cls:
        wanted = cls.model_fields["kind"].default
        raise ConfigError(f"config {source} is a {kind} config (kind: {kind}); this command needs kind: {wanted}")
    return parse_config(data, overrides, source=source, cls=STAGE_CONFIGS[kind])


__all__ = ["config_kind", "format_errors", "load_config", "parse_config", "read_config_file", "set_key"]
