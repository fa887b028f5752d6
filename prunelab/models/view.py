"""One view of a causal LM for everything that removes, records or replays its decoder layers.

Each supported family is one `Family` entry: where its decoder stack lives (`model.layers` for most,
`model.language_model.layers` for Gemma 3 as shipped, whose vision tower is kept as it is), which sub-config
describes it, and which per-layer config entries must follow the layers when some are removed:

- lists with one entry per layer (`layer_types`: sliding, full or linear attention; SmolLM3's `no_rope_layers`),
  filtered;
- the MoE layout, where a family writes it as a rule rather than a list (Qwen3-MoE: `mlp_only_layers` and
  `decoder_sparse_step`; DeepSeek-V3: `first_k_dense_replace`), rewritten so every remaining layer keeps its dense
  or sparse block. A layout the family's config cannot express is refused before anything changes.

Surgery (`prunelab.surgery`), the scoring engine, the multi-candidate generator, the hidden-state strategies, the
cost bound and export all read the model through `ModelView` or the config functions here; nothing else knows where
a family keeps its layers. A new family is one `Family` line (and a tiny config in `tests/tiny.py`).
"""

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from prunelab.errors import ModelError

FULL, SLIDING, LINEAR = "full_attention", "sliding_attention", "linear_attention"
DENSE, SPARSE = "dense", "sparse"

# config lists with one entry per decoder layer: filtered with the layers
PER_LAYER_LISTS = ("layer_types", "no_rope_layers")


# -- MoE layouts: config -> which layers are sparse, and back --------------------------------------------------------

def _all_dense(config) -> list[str]:
    return [DENSE] * config.num_hidden_layers


def _all_sparse(config) -> list[str]:
    return [SPARSE] * config.num_hidden_layers


def _uniform_fields(config, kinds: list[str]) -> dict:
    return {}  # every layer is of one kind: nothing to rewrite


def _qwen_moe(config) -> list[str]:
    step = config.decoder_sparse_step or 1
    only_mlp = set(config.mlp_only_layers or ())
    return [SPARSE if i not in only_mlp and config.num_experts > 0 and (i + 1) % step == 0 else DENSE
            for i in range(config.num_hidden_layers)]


def _qwen_moe_fields(config, kinds: list[str]) -> dict:
    # a list describes any pattern: every layer is a candidate for experts, the dense ones listed
    return {"decoder_sparse_step": 1, "mlp_only_layers": [i for i, kind in enumerate(kinds) if kind == DENSE]}


def _deepseek(config) -> list[str]:
    return [DENSE if i < config.first_k_dense_replace else SPARSE for i in range(config.num_hidden_layers)]


def _deepseek_fields(config, kinds: list[str]) -> dict:
    dense = kinds.count(DENSE)
    if kinds != [DENSE] * dense + [SPARSE] * (len(kinds) - dense):  # cannot happen by removal; a guard for others
        raise ModelError(f"the layers left are {kinds}; {config.model_type} can only express dense layers first "
                         "(first_k_dense_replace)")
    return {"first_k_dense_replace": dense}


@dataclass(frozen=True)
class Family:
    model_type: str
    decoder: str = "model"  # attribute path from the causal LM to the module holding `.layers` and `.norm`
    text_config: str | None = None  # the sub-config of the decoder (multimodal checkpoints), else the config itself
    moe: Callable = _all_dense  # config -> DENSE/SPARSE per layer
    moe_fields: Callable = _uniform_fields  # (config, DENSE/SPARSE list) -> the config entries that express it


FAMILIES = {f.model_type: f for f in (
    Family("llama"),
    Family("mistral"),
    Family("qwen2"),
    Family("qwen3"),
    Family("qwen3_moe", moe=_qwen_moe, moe_fields=_qwen_moe_fields),
    Family("mixtral", moe=_all_sparse),
    Family("gemma2"),
    Family("gemma3_text"),
    Family("gemma3", decoder="model.language_model", text_config="text_config"),  # the multimodal checkpoint
    Family("phi3"),
    Family("olmo2"),
    Family("smollm3"),
    Family("gpt_oss", moe=_all_sparse),
    Family("qwen3_5_text"),  # hybrid: linear-attention layers hold a recurrent state, not a KV cache
    Family("qwen3_5", decoder="model.language_model", text_config="text_config"),
    Family("deepseek_v3", moe=_deepseek, moe_fields=_deepseek_fields),
)}
SUPPORTED_MODEL_TYPES = tuple(FAMILIES)


def family_of(config, what: str = "") -> Family:
    """The family of a model's config; a `ModelError` naming the model type and the supported ones otherwise."""
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        raise ModelError(f"unsupported architecture {model_type!r}{f' ({what})' if what else ''}; "
                         f"layer surgery supports: {', '.join(SUPPORTED_MODEL_TYPES)}")
    return FAMILIES[model_type]


def text_config(config):
    """The config that describes the decoder layers (the text config of a multimodal checkpoint)."""
    family = family_of(config)
    return getattr(config, family.text_config) if family.text_config else config


@dataclass(frozen=True)
class LayerKind:
    attention: str  # FULL, SLIDING or LINEAR (a recurrent state, not a KV cache)
    ffn: str  # DENSE or SPARSE (mixture of experts)


def layer_kinds(config) -> list[LayerKind]:
    """Each decoder layer's attention and feed-forward kind, from the config alone."""
    text = text_config(config)
    n = text.num_hidden_layers
    # without layer_types, a window applies to every layer (Mistral, Mixtral, Phi-3 build one sliding mask for all)
    types = list(getattr(text, "layer_types", None) or [SLIDING] * n)
    if not getattr(text, "sliding_window", None):  # a sliding type without a window attends to everything
        types = [FULL if t == SLIDING else t for t in types]
    ffn = family_of(config).moe(text)
    return [LayerKind(types[i] if types[i] in (SLIDING, LINEAR) else FULL, ffn[i]) for i in range(n)]


def attention_window(config) -> int | None:
    """The window of the sliding-attention layers, if the model has any."""
    text = text_config(config)
    if any(kind.attention == SLIDING for kind in layer_kinds(config)):
        return int(text.sliding_window)
    return None


def resume_point(removed, linear: list[bool]) -> tuple[int, list[int]]:
    """(start, keep) for running a model without the sorted, non-empty layers `removed` from the recorded input of
    layer `start`: the first removed layer, then the kept layers after it. Where those are linear-attention layers
    only (`linear`: per layer of the whole model), transformers has no attention layer to size a hybrid's masks
    from: it starts at the last attention layer before instead (recorded input, that layer and the kept ones)."""
    start, num_layers = removed[0], len(linear)
    keep = [layer for layer in range(start + 1, num_layers) if layer not in removed]
    if any(linear) and keep and all(linear[layer] for layer in keep):
        before = [layer for layer in range(start) if not linear[layer]]
        if before:
            start = before[-1]
            keep = [layer for layer in range(start, num_layers) if layer not in removed]
    return start, keep


def require_attention(config, keep) -> None:
    """Refuses keeping only the layers `keep` of a hybrid model where they are linear-attention layers only:
    transformers' cache of a hybrid model sizes its masks from an attention layer, and with none it fails."""
    attention = [kind.attention for kind in layer_kinds(config)]
    if LINEAR in attention and all(attention[i] == LINEAR for i in keep):
        raise ModelError(f"removing these layers leaves {config.model_type} with linear-attention layers only; keep "
                         f"at least one of its attention layers "
                         f"{[i for i, a in enumerate(attention) if a != LINEAR]}")


def keep_in_config(config, keep: list[int]) -> None:
    """Rewrites `config` (the whole model's) in place to describe only the layers `keep`, in order: per-layer lists
    filtered, the MoE layout rewritten so each kept layer keeps its kind, the layer count. Checks first, so a
    layout the family cannot express changes nothing."""
    family = family_of(config)
    text = text_config(config)
    kinds = family.moe(text)
    require_attention(config, keep)
    changes = family.moe_fields(text, [kinds[i] for i in keep])  # raises before `config` is touched
    for name in PER_LAYER_LISTS:
        values = getattr(text, name, None)
        if values is not None:
            if len(values) != text.num_hidden_layers:
                raise ModelError(f"{config.model_type}: config.{name} has {len(values)} entries for "
                                 f"{text.num_hidden_layers} layers")
            changes[name] = [values[i] for i in keep]
    for name, value in {**changes, "num_hidden_layers": len(keep)}.items():
        setattr(text, name, value)


def _config_state(config) -> dict:
    """What `keep_in_config` may change, to put back."""
    text = text_config(config)
    names = (*PER_LAYER_LISTS, "num_hidden_layers", "mlp_only_layers", "decoder_sparse_step",
             "first_k_dense_replace")
    return {name: copy.deepcopy(getattr(text, name)) for name in names if hasattr(text, name)}


def _set_layer_idx(layer: nn.Module, idx: int) -> None:
    for module in layer.modules():
        if hasattr(module, "layer_idx"):
            module.layer_idx = idx


def _attr_path(obj, path: str):
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


class ModelView:
    """A loaded causal LM seen as: embeddings -> decoder layers -> final norm -> output head.

    `decoder` runs the stack (`inputs_embeds=` a recorded layer input resumes it); `layers`, `norm`, `logits()`
    (softcapping applied); `keep()` / `drop()` change which layers run, keeping `layer_idx` and the per-layer config
    consistent; `recording()` records every layer's input."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.family = family_of(model.config, type(model).__name__)
        self.config = text_config(model.config)
        decoder = _attr_path(model, self.family.decoder)
        head = getattr(model, "lm_head", None)
        if (decoder is None or not isinstance(getattr(decoder, "layers", None), nn.ModuleList)
                or getattr(decoder, "norm", None) is None or head is None):
            raise ModelError(
                f"{type(model).__name__} (model_type {model.config.model_type!r}) does not have the layout of its "
                f"family: expected decoder layers at .{self.family.decoder}.layers, a final norm at "
                f".{self.family.decoder}.norm and an output head at .lm_head (a custom model class under a known "
                "model_type?); refusing rather than removing the wrong modules")
        if len(decoder.layers) != self.config.num_hidden_layers:
            raise ModelError(f"{type(model).__name__} has {len(decoder.layers)} decoder layers but its config says "
                             f"{self.config.num_hidden_layers}")
        self.decoder, self.head = decoder, head
        self.softcap = getattr(self.config, "final_logit_softcapping", None)

    @property
    def layers(self) -> nn.ModuleList:
        return self.decoder.layers

    @property
    def norm(self) -> nn.Module:
        return self.decoder.norm

    @property
    def num_layers(self) -> int:
        return len(self.decoder.layers)

    @property
    def device(self) -> torch.device:
        """Where the inputs go: the device of the embeddings (the first layer's, with layers spread over devices)."""
        return next(self.decoder.parameters()).device

    def mlp_output(self, index: int, what: str) -> nn.Linear:
        """The linear layer whose output is layer `index`'s MLP contribution to the residual stream (its down
        projection); `what` needs it ("method linear folds its map into"). Refused where no linear layer writes
        that output: a family that normalizes the MLP's output after it, or a mixture of experts."""
        from prunelab.errors import ConfigError

        layer, family = self.layers[index], self.family.model_type
        if getattr(layer, "post_feedforward_layernorm", None) is not None:
            raise ConfigError(f"{what} the MLP's down projection of layer {index}, but {family} normalizes the "
                              "MLP's output after it (post_feedforward_layernorm), so no linear layer writes that "
                              "output: use sft, kd or partial for this family")
        down = getattr(getattr(layer, "mlp", None), "down_proj", None)
        if not isinstance(down, nn.Linear):
            raise ConfigError(f"{what} the MLP's down projection, but layer {index} of {family} has none (a mixture "
                              "of experts?): use sft, kd or partial for this model")
        return down

    def kinds(self) -> list[LayerKind]:
        return layer_kinds(self.model.config)

    @property
    def window(self) -> int | None:
        return attention_window(self.model.config)

    def window_masks(self) -> str | None:
        """How the decoder takes attention masks built by the caller for its sliding-window layers: "tensor" where
        every attention layer slides (one 4D mask, which transformers uses as given), "mapping" where full and
        sliding layers mix and the decoder takes one 4D mask per layer type (`{"full_attention": ...,
        "sliding_attention": ...}`, as Gemma 2/3 and gpt-oss do), None where it has no sliding layer or takes
        neither (then its masks are transformers' own, built from cache columns)."""
        import inspect

        kinds = {kind.attention for kind in self.kinds()}
        if SLIDING not in kinds or LINEAR in kinds:
            return None
        if kinds == {SLIDING}:
            return "tensor"
        source = inspect.getsource(type(self.decoder).forward)
        return "mapping" if "attention_mask, dict)" in source else None

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """fp32 logits from final-normed hidden states, softcapped where the family softcaps."""
        logits = self.head(hidden.to(self.head.weight.device)).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    # -- which layers run --------------------------------------------------------------------------------------

    def _keep_only(self, keep: list[int]) -> None:
        keep_in_config(self.model.config, keep)  # first: it refuses a layout the family cannot express
        old = list(self.decoder.layers)
        self.decoder.layers = nn.ModuleList(old[i] for i in keep)
        for new_idx, layer in enumerate(self.decoder.layers):
            _set_layer_idx(layer, new_idx)

    def drop(self, removed: set[int]) -> None:
        self._keep_only([i for i in range(self.num_layers) if i not in removed])

    @contextlib.contextmanager
    def keep(self, keep: list[int]) -> Iterator[nn.Module]:
        """Runs the model with only the layers `keep` (sorted) for the life of the context, then restores it."""
        saved_layers, saved_config = self.decoder.layers, _config_state(self.model.config)
        try:
            self._keep_only(keep)
            yield self.model
        finally:
            self.decoder.layers = saved_layers
            for idx, layer in enumerate(saved_layers):
                _set_layer_idx(layer, idx)
            for name, value in saved_config.items():
                setattr(self.config, name, value)

    # -- recording layer inputs ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def recording(self, layers=None) -> Iterator[list[torch.Tensor]]:
        """Appends each decoder layer's input hidden states to the yielded list as the layers run (in order, one
        per layer per forward), for `layers` (default: all)."""
        recorded: list[torch.Tensor] = []

        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            # kept on the layer's own device (with layers spread over GPUs, the input arrives on the one before)
            recorded.append(hidden.to(next(module.parameters()).device))

        handles = [layer.register_forward_pre_hook(hook, with_kwargs=True)
                   for layer in (self.layers if layers is None else layers)]
        try:
            yield recorded
        finally:
            for handle in handles:
                handle.remove()


def view(model: nn.Module) -> ModelView:
    return ModelView(model)


__all__ = ["DENSE", "FAMILIES", "FULL", "LINEAR", "SLIDING", "SPARSE", "SUPPORTED_MODEL_TYPES", "Family",
           "LayerKind", "ModelView", "attention_window", "family_of", "keep_in_config", "layer_kinds",
           "require_attention", "resume_point", "text_config", "view"]
