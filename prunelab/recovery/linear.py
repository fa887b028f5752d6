"""Training-free linear replacement (method linear; ReplaceMe, Shopkhoev et al., 2025).

Each contiguous run of removed layers a..b is replaced by a linear map T, estimated on calibration texts in the
base model: with M the MLP output of layer a-1 (the last kept layer before the run), r the rest of that layer's
output (its residual stream), and Y the input of layer b+1 (the run's output),

    T = argmin || M T - (Y - r) ||^2 + ridge * mean(diag(M^T M)) * ||T||^2

over every real token. Since M = act(x) W^T (+ b), M T is the same linear layer with W' = T^T W (b' = T^T b): the
map folds into layer a-1's down projection, and the result is a stock checkpoint that transformers and vLLM load.
A run at layer 0 has no layer before it, and a family that normalizes the MLP's output (Gemma 2/3's
post-feedforward norm) or routes it through experts has no single linear layer to fold into: both are refused.
Runs are estimated independently, each on the base model's activations.
"""

from collections.abc import Sequence

import torch

from prunelab.errors import ConfigError, DataError


def removed_runs(removed: Sequence[int]) -> list[tuple[int, int]]:
    """Contiguous runs (first, last) of the removed layers, in order."""
    runs: list[list[int]] = []
    for layer in sorted(set(removed)):
        if runs and layer == runs[-1][1] + 1:
            runs[-1][1] = layer
        else:
            runs.append([layer, layer])
    return [(a, b) for a, b in runs]


def check_foldable(model, removed: Sequence[int]) -> list[tuple[int, int]]:
    """The runs of `removed`, after checking that each has a kept layer before it with a down projection."""
    from prunelab.models.view import view

    v = view(model)
    runs = removed_runs(removed)
    if not runs:
        raise ConfigError("method linear replaces removed layers, and the pruned model's manifest names none")
    for a, b in runs:
        if a == 0:
            raise ConfigError(f"method linear folds each run of removed layers into the layer before it; the run "
                              f"{a}..{b} starts at layer 0, which has none: prune another way, or use sft, kd or "
                              "partial")
        v.mlp_output(a - 1, "method linear folds its map into")
    return runs


def _output(output):
    return output[0] if isinstance(output, tuple) else output


@torch.inference_mode()
def estimate_maps(model, tokenizer, texts: Sequence[str], removed: Sequence[int], max_length: int = 512,
                  ridge: float = 1e-4, batch_size: int = 8, progress=None) -> dict[tuple[int, int], torch.Tensor]:
    """{(first, last): T} for each run of `removed`, from the base `model` (all layers) on `texts`; T is float64
    [hidden, hidden]. `progress(done, total)` after each batch."""
    from prunelab.models.view import view

    v = view(model)
    runs = check_foldable(model, removed)
    if not texts:
        raise DataError("method linear estimates its maps on calibration texts, and there are none: set "
                        "linear.calibration (source, samples)")
    hidden = v.config.hidden_size
    normal = {run: torch.zeros(hidden, hidden, dtype=torch.float64) for run in runs}
    moment = {run: torch.zeros(hidden, hidden, dtype=torch.float64) for run in runs}
    seen: dict = {}

    def keep(key):
        def hook(module, args, kwargs, output=None):
            seen[key] = _output(output) if output is not None else (args[0] if args else kwargs["hidden_states"])
        return hook

    handles = []
    for a, b in runs:
        handles.append(v.layers[a - 1].mlp.register_forward_hook(keep(("mlp", a)), with_kwargs=True))
        handles.append(v.layers[a - 1].register_forward_hook(keep(("out", a)), with_kwargs=True))
        after = v.layers[b + 1] if b + 1 < v.num_layers else v.norm
        handles.append(after.register_forward_pre_hook(keep(("in", b)), with_kwargs=True))
    encoded = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    tokens = 0
    try:
        for start in range(0, len(order), batch_size):
            batch = [encoded[i] for i in order[start:start + batch_size]]
            width = max(len(ids) for ids in batch)
            ids = torch.tensor([x + [pad] * (width - len(x)) for x in batch], device=v.device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in batch], device=v.device).bool()
            seen.clear()
            v.decoder(input_ids=ids, attention_mask=mask.long(), use_cache=False)
            for a, b in runs:
                real = mask.to(seen[("mlp", a)].device)
                m = seen[("mlp", a)][real].double()
                r = seen[("out", a)][real].double() - m
                y = seen[("in", b)].to(real.device)[real].double()
                normal[(a, b)] += (m.T @ m).cpu()
                moment[(a, b)] += (m.T @ (y - r)).cpu()
            tokens += int(mask.sum())
            if progress:
                progress(min(start + batch_size, len(order)), len(order))
    finally:
        for handle in handles:
            handle.remove()
    if ridge == 0 and tokens < hidden:
        raise DataError(f"method linear has {tokens} calibration tokens for maps of {hidden} x {hidden}: the least "
                        "squares are underdetermined; use more linear.calibration samples or a ridge above 0")
    maps = {}
    for run in runs:
        a = normal[run]
        damp = ridge * float(a.diagonal().mean()) * torch.eye(hidden, dtype=torch.float64)
        maps[run] = torch.linalg.solve(a + damp, moment[run])
    return maps


@torch.no_grad()
def fold_maps(model, maps: dict[tuple[int, int], torch.Tensor]) -> None:
    """Folds each run's map into the down projection of the layer before it (W' = T^T W, b' = T^T b), in place;
    the runs' layers are still in the model (remove them after)."""
    from prunelab.models.view import view

    v = view(model)
    for (a, _), t in maps.items():
        down = v.mlp_output(a - 1, "method linear folds its map into")
        t = t.to(down.weight.device)
        down.weight.copy_((t.T @ down.weight.double()).to(down.weight.dtype))
        if down.bias is not None:
            down.bias.copy_((t.T @ down.bias.double()).to(down.bias.dtype))


def calibration_texts(spec) -> tuple[list[str], dict]:
    """The calibration texts of `linear.calibration`, checked against the test items of every task (the maps must
    not be fitted on what is evaluated), and what identifies them."""
    from prunelab.data.corpora import load_corpus, texts_hash
    from prunelab.tasks import TASKS
    from prunelab.tasks.overlap import check_disjoint

    texts = load_corpus(spec.source, limit=spec.samples, seed=spec.seed)
    if not texts:
        raise DataError(f"linear.calibration.source {spec.source!r} gave no texts; method linear estimates its maps "
                        "on them")
    check_disjoint(texts, list(TASKS.names()), "linear.calibration")
    return texts, {"source": spec.source, "samples": len(texts), "seed": spec.seed, "sha256": texts_hash(texts),
                   "max_length": spec.max_length}


def replace_with_maps(base_path: str, removed: list[int], spec, texts: list[str], out_dir: str, tokenizer,
                      manifest: dict, save_dtype: str) -> dict:
    """Loads the base model (fp32 for the statistics) where this process runs, estimates and folds each run's map,
    removes the runs and saves a stock checkpoint in `save_dtype` (auto: the base checkpoint's own) with `manifest`
    beside it; returns the fit's record (per run: relative residual on the calibration texts)."""
    from prunelab.hardware import device_name
    from prunelab.models import load_model
    from prunelab.models.view import view
    from prunelab.recovery.train import checkpoint_dtype
    from prunelab.surgery import save_pruned

    model, _ = load_model(base_path, dtype="float32", device=device_name())
    maps = estimate_maps(model, tokenizer, texts, removed, spec.calibration.max_length, spec.ridge)
    fold_maps(model, maps)
    view(model).drop(set(removed))
    model.to(checkpoint_dtype(base_path, save_dtype))
    eye = torch.eye(model.config.get_text_config().hidden_size, dtype=torch.float64)
    # how far each map is from leaving the layer as it was (0: the run was an identity), relative to ||I||
    record = {"runs": [[a, b] for a, b in maps], "ridge": spec.ridge,
              "distance_from_identity": [round(float((t - eye).norm() / eye.norm()), 6) for t in maps.values()]}
    save_pruned(model, tokenizer, out_dir, {**manifest, "recovery": {"method": "linear", **record}})
    return record


def transform(config, needs: dict, tokenizer, manifest: dict, out_dir: str, place) -> dict:
    """The method's transformation (`RecoveryMethod.transforms`): the base model with each removed run replaced by
    its folded map, saved as a stock checkpoint in `out_dir`, computed where `place` runs it; returns its record."""
    return place(replace_with_maps, needs["base_path"], needs["removed"], config.linear, needs["texts"], out_dir,
                 tokenizer, manifest, config.model.dtype)


def needs(config, facts, manifest: dict) -> dict:
    """The base model and the layers its pruning removed (from the pruning manifest), foldable in this family, and
    the calibration texts the maps are estimated on."""
    from transformers import AutoModelForCausalLM

    from prunelab.config import ModelSpec
    from prunelab.errors import DataError
    from prunelab.models import inspect_model
    from prunelab.surgery import MANIFEST_NAME

    removed = manifest.get("removed_layers")
    if not removed or not manifest.get("base_model_path"):
        raise DataError(f"method linear rebuilds {config.model.name!r} from its base model, and its pruning "
                        f"manifest ({MANIFEST_NAME}) does not say which layers of which base model were removed; "
                        "prune it with prunelab prune")
    base = inspect_model(ModelSpec(name=manifest["base_model_path"], dtype=config.model.dtype))
    with torch.device("meta"):
        check_foldable(AutoModelForCausalLM.from_config(base.config), removed)
    texts, calibration = calibration_texts(config.linear.calibration)
    return {"texts": texts, "calibration": calibration, "base_path": base.path, "removed": list(removed)}
