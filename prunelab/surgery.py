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

from prunelab.atomic import shared_mode
from prunelab.errors import ModelError
from prunelab.models.view import view

MANIFEST_NAME = "prunelab_manifest.json"


def decoder(model: nn.Module) -> nn.Module:
    """The module holding `.layers` and `.norm`, for a supported causal LM; a clear error otherwise."""
    return view(model).decoder


def num_layers(model: nn.Module) -> int:
    return view(model).num_layers


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


def drop_layers(model: nn.Module, layers: Iterable[int]) -> nn.Module:
    """Removes decoder layers `layers` (indices of the current model) in place; weights are not copied.

    Returns the model. Renumbers `layer_idx` of the remaining layers and rewrites the per-layer config (layer types,
    MoE layout; `prunelab.models.view`), so generation with a cache, sliding-window masks and per-layer RoPE stay
    right and the exported config describes the remaining layers exactly.
    """
    v = view(model)
    v.drop(set(check_layers(layers, v.num_layers)))
    return model


@contextlib.contextmanager
def keep_layers(model: nn.Module, keep: list[int]) -> Iterator[nn.Module]:
    """Temporarily runs the model with only the layers `keep` (sorted indices), then restores it exactly.

    Used by the sweep to evaluate many candidates on one loaded model without copying weights.
    """
    with view(model).keep(list(keep)) as kept:
        yield kept


def save_pruned(model: nn.Module, tokenizer, out_dir: str | Path, manifest: dict,
                files: dict[str, str] | None = None) -> Path:
    """Writes a pruned model as a stock Hugging Face checkpoint plus `prunelab_manifest.json` (and `files`, name ->
    text, e.g. meta.json), atomically.

    The manifest says which layers of which base model were removed and why (strategy, scores); the directory
    appears complete or not at all.
    """
    from prunelab.progress import bar

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    shown = bar(total=1, desc=f"export {out_dir.name}", unit="checkpoint")  # seconds to write it, when done
    try:
        shared_mode(tmp, directory=True)
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        manifest = {**manifest, "num_hidden_layers": view(model).num_layers}
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        for name, text in (files or {}).items():
            (tmp / name).write_text(text)
        for path in tmp.rglob("*"):  # safetensors writes the weights through a 0600 temp file of its own
            shared_mode(path, directory=path.is_dir())
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
        shown.update(1)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        shown.close()
    return out_dir
