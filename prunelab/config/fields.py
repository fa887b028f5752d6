"""What every config field says about the cache key, and the identity built from it.

Each field of a config model is declared with one of three markers, and a test fails on any field without one:

    key(...)      it can change a number: it belongs to the identity, so a results directory made with another
                  value is refused and a pipeline stage with another value is recomputed
    extent(...)   which candidates are computed (sweep layers, strategies, ratios), each stored under its own key:
                  in the pipeline's stage key (the artifact holds them), not in a results directory's claim, so a
                  directory can be extended with more
    setting(...)  how or where it runs (paths, names, workers, batch sizes, addresses, progress): in neither

A field holding another config model is walked: its own fields decide. `identity()` is the claim (key fields);
`stage_identity()` the pipeline's stage key (key and extent fields).
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

ROLE = "prunelab_identity"
KEY, EXTENT, SETTING = "key", "extent", "setting"


def _field(role: str, default: Any, **kwargs) -> Any:
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    if "default_factory" in kwargs:  # a default computed when a config is made (the tasks registered by then)
        return Field(json_schema_extra={**extra, ROLE: role}, **kwargs)
    return Field(default, json_schema_extra={**extra, ROLE: role}, **kwargs)


def key(default: Any = ..., **kwargs) -> Any:
    """A field that can change a number (see the module docstring)."""
    return _field(KEY, default, **kwargs)


def extent(default: Any = ..., **kwargs) -> Any:
    """A field that says which candidates are computed, each stored under its own key."""
    return _field(EXTENT, default, **kwargs)


def setting(default: Any = ..., **kwargs) -> Any:
    """A field that says how or where the work runs, never what it computes."""
    return _field(SETTING, default, **kwargs)


def role_of(info: FieldInfo) -> str | None:
    extra = info.json_schema_extra
    return extra.get(ROLE) if isinstance(extra, dict) else None


class Frozen(BaseModel):
    """A config model: frozen, unknown keys rejected, its identity from its fields' markers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def identity(self) -> dict[str, Any]:
        """What a results directory's rows depend on: the key fields, walked into sections."""
        return self._identity((KEY,))

    def stage_identity(self) -> dict[str, Any]:
        """What a pipeline stage's artifact depends on: key and extent fields."""
        return self._identity((KEY, EXTENT))

    def _identity(self, roles: tuple[str, ...]) -> dict[str, Any]:
        out = {}
        for name, info in type(self).model_fields.items():
            role = role_of(info)
            if role is None:
                raise TypeError(f"{type(self).__name__}.{name} has no identity marker (key, extent or setting)")
            if role in roles:
                value = getattr(self, name)
                out[name] = _value(value, roles)
                if isinstance(value, Frozen) and out[name] == {}:
                    del out[name]  # a section with nothing of this kind (the sweep's settings, in a claim)
        return self.resolve_identity(out)

    def resolve_identity(self, identity: dict[str, Any]) -> dict[str, Any]:
        """A model's last word on its identity: what `auto` resolves to on this machine, fields that only apply to
        some values. By default, the identity as the markers made it."""
        return identity


def _value(value: Any, roles: tuple[str, ...]) -> Any:
    if isinstance(value, Frozen):
        return value._identity(roles)
    if isinstance(value, (list, tuple)):
        return [_value(v, roles) for v in value]
    if isinstance(value, dict):
        return {k: _value(v, roles) for k, v in value.items()}
    return value


__all__ = ["EXTENT", "KEY", "SETTING", "Frozen", "extent", "key", "role_of", "setting"]
