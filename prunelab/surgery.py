"""Remove decoder layers from a causal LM in memory, and export the result as a stock Hugging Face checkpoint.

Removing a layer is more than deleting a module: every remaining attention keeps its position in the KV cache by
`layer_idx`, and some families (Gemma 2/3, Qwen2 with sliding windows) choose mask and RoPE per layer from
`config.layer_types[i]`. Forgetting either runs without error and gives wrong results, so both are kept consistent.
"""

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from torch import nn

from prunelab.errors import ModelError

# model_type -> attribute path of the decoder stack (all are `<CausalLM>.model.layers`)
SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "mistral", "gemma2", "gemma3_text")

MANIFEST_NAME = "prunelab_manifest.json"


def check_supported(config, what: str = "") -> None:
    """A clear error unless `config` (a model's config) is of an architecture layer surgery supports."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelError(
            f"unsupported architecture {model_type!r}{f' ({what})' if what else ''}; "
            f"layer surgery supports: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )


def decoder(model: nn.Module) -> nn.Module:
    """The base model holding `.layers` and `.norm`, for a supported causal LM; a clear error otherwise."""
    check_supported(model.config, type(model).__name__)
    return model.model


def num_layers(model: nn.Module) -> int:
    return len(decoder(model).layers)


def check_layers(layers: Iterable[int], total: int, field: str = "layers", together: bool = True) -> list[int]:
    """Validates layer indices against a model of `total` layers; returns them sorted. `field` names where the list
    came from in the error (a config key, a flag); `together`: the layers are removed at once, so not all of them
    (a sweep's are removed one at a time)."""
    layers = list(layers)
    wrong = [x for x in layers if isinstance(x, bool) or not isinstance(x, int)]
    if wrong:
        raise ModelError(f"{field} has {wrong} that are not layer indices; allowed: integers 0..{total - 1}")
    bad = [x for x in layers if not 0 <= x < total]
    if bad:
        raise ModelError(f"{field} has {bad} out of range; the model has {total} layers (0..{total - 1})")
    repeated = sorted({x for x in layers if layers.count(x) > 1})
    if repeated:
        raise ModelError(f"{field} repeats {repeated}; give each layer once")
    if together and len(layers) >= total:
        raise ModelError(f"{field}: cannot remove all {total} layers; at least one must remain")
    return sorted(layers)


def _set_layer_idx(layer: nn.Module, idx: int) -> None:
    for module in layer.modules():
        if hasattr(module, "layer_idx"):
            module.layer_idx = idx


def drop_layers(model: nn.Module, layers: Iterable[int]) -> nn.Module:
    """Removes decoder layers `layers` (indices of the current model) in place; weights are not copied.

    Returns the model. Renumbers `layer_idx` of the remaining layers and filters `config.layer_types`, so generation
    with a KV cache, sliding-window masks and per-layer RoPE stay right.
    """
    base = decoder(model)
    total = len(base.layers)
    removed = set(check_layers(layers, total))
    keep = [i for i in range(total) if i not in removed]
    _keep_only(model, keep)
    return model


def _keep_only(model: nn.Module, keep: list[int]) -> None:
    base = decoder(model)
    old = list(base.layers)
    base.layers = nn.ModuleList(old[i] for i in keep)
    for new_idx, layer in enumerate(base.layers):
        _set_layer_idx(layer, new_idx)
    config = model.config
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = [config.layer_types[i] for i in keep]
    config.num_hidden_layers = len(keep)


@contextlib.contextmanager
def keep_layers(model: nn.Module, keep: list[int]) -> Iterator[nn.Module]:
    """Temporarily runs the model with only the layers `keep` (sorted indices), then restores it exactly.

    Used by the sweep to evaluate many candidates on one loaded model without copying weights.
    """
    base = decoder(model)
    config = model.config
    saved_layers = base.layers
    saved_types = list(config.layer_types) if getattr(config, "layer_types", None) is not None else None
    saved_num = config.num_hidden_layers
    try:
        _keep_only(model, keep)
        yield model
    finally:
        base.layers = saved_layers
        for idx, layer in enumerate(saved_layers):
            _set_layer_idx(layer, idx)
        if saved_types is not None:
            config.layer_types = saved_types
        config.num_hidden_layers = saved_num


def save_pruned(model: nn.Module, tokenizer, out_dir: str | Path, manifest: dict,
                files: dict[str, str] | None = None) -> Path:
    """Writes a pruned model as a stock Hugging Face checkpoint plus `prunelab_manifest.json` (and `files`, name ->
    text, e.g. meta.json), atomically.

    The manifest says which layers of which base model were removed and why (strategy, scores); the directory
    appears complete or not at all.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    try:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        manifest = {**manifest, "num_hidden_layers": model.config.num_hidden_layers}
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        for name, text in (files or {}).items():
            (tmp / name).write_text(text)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
