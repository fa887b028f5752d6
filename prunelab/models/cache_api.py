"""The key/value cache's name in transformers' forward calls and outputs: `cache` in current releases,
`past_key_values` before (5.19, which vLLM's pins still install). The old name warns (a FutureWarning) and is removed
in 5.40, inside the `<6` range prunelab accepts, so every call site goes through here."""

import functools


@functools.cache
def _name() -> str:
    from transformers.modeling_outputs import BaseModelOutputWithPast

    return "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


def with_cache(cache) -> dict:
    """The keyword argument that passes `cache` to a model's forward."""
    return {_name(): cache}


def cache_of(output):
    """The cache a forward call returned."""
    return getattr(output, _name())


__all__ = ["cache_of", "with_cache"]
