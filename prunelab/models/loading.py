"""Load a causal LM and its tokenizer: a built-in name, a local Hugging Face directory, or a hub id."""

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from prunelab.errors import ModelError
from prunelab.hardware import dtype_name
from prunelab.models.builtin import BUILTIN_MODELS, builtin_model_dir

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """`auto` is bf16 on a GPU or a CPU with native bf16, fp32 otherwise (`prunelab.hardware.dtype_name`)."""
    if dtype == "auto":
        return DTYPES[dtype_name(dtype, device)]
    if dtype not in DTYPES:
        raise ModelError(f"model.dtype is {dtype!r}; allowed: auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def stored_dtype(name: str, revision: str | None = None) -> torch.dtype | None:
    """The dtype a checkpoint's weights are stored in: its config's `dtype` (`torch_dtype` in older ones), else
    the floating dtype of its first safetensors file's tensors; None where it cannot be read (no such model, a hub
    id offline)."""
    import json

    try:
        path = resolve_model_path(name)
        if Path(path).is_dir():
            config = json.loads((Path(path) / "config.json").read_text())
        else:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(path, revision=revision).to_dict()
    except Exception:  # an unknown or unreachable model: the caller decides what that means
        return None
    text = config.get("text_config") or {}
    for value in (config.get("dtype"), config.get("torch_dtype"), text.get("dtype"), text.get("torch_dtype")):
        if str(value).replace("torch.", "") in DTYPES:
            return DTYPES[str(value).replace("torch.", "")]
    files = sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else []
    if files:
        from safetensors import safe_open

        with safe_open(files[0], framework="pt") as f:
            for key in f.keys():
                dtype = f.get_slice(key).get_dtype()
                names = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}
                if dtype in names:
                    return DTYPES[names[dtype]]
    return None


def export_dtype(name: str, setting: str = "source", revision: str | None = None) -> torch.dtype:
    """What a checkpoint derived from `name` (pruned, merged, folded) is saved in: `source`, the dtype `name` is
    stored in, so that pruning removes layers and changes nothing else; or the dtype named, converting on purpose."""
    if setting != "source":
        if setting not in DTYPES:
            raise ModelError(f"output dtype is {setting!r}; allowed: source, {', '.join(DTYPES)}")
        return DTYPES[setting]
    stored = stored_dtype(name, revision)
    if stored is None:
        raise ModelError(f"cannot read the dtype {name!r} is stored in (no dtype in its config.json and no "
                         "safetensors file); name the output dtype (float32, bfloat16, float16)")
    return stored


def dtype_record(name: str, saved: torch.dtype, revision: str | None = None) -> dict:
    """What a manifest says of a derived checkpoint's precision: the dtype its source is stored in, the one it was
    saved in, and whether that converted it."""
    stored = stored_dtype(name, revision)
    short = {v: k for k, v in DTYPES.items()}
    return {"stored": short.get(stored), "saved": short[saved], "converted": stored is not None and stored != saved}


def resolve_model_path(name: str) -> str:
    """A built-in name becomes its converted directory; a local directory stays; anything else is a hub id."""
    if name in BUILTIN_MODELS:
        return str(builtin_model_dir(name))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError(f"model directory {str(path)!r} has no config.json; it is not a Hugging Face model")
        return str(path)
    parent = path.parent
    if str(parent) not in ("", ".") and parent.is_dir():
        # 'pruned/qwen-bi25' where ./pruned exists is a checkpoint not written yet, not the hub's org 'pruned'
        raise ModelError(
            f"model directory {name!r} does not exist (its parent {str(parent)!r} does): a pruned checkpoint is "
            f"written by `prunelab prune ... output_dir={name}` (or `prunelab drop --out {name}`), a recovered one "
            "by `prunelab recover` (its merged/ directory); run that first")
    if os.environ.get("HF_HUB_OFFLINE") == "1" or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelError(
            f"unknown model {name!r}: not a built-in model ({', '.join(BUILTIN_MODELS)}), not an existing "
            "directory, and not a Hugging Face hub id of the form 'org/name' reachable online"
        )
    return name


def _hub_hint(name: str, path: str) -> str:
    """What to add when a name that is no local directory failed as a hub id: it may be a checkpoint not made yet."""
    if path != name:
        return ""
    return (f" (no local directory {name!r} exists either: if it is a checkpoint, `prunelab prune ... "
            f"output_dir={name}` or `prunelab recover` makes it)")


def _remote_code_error(name: str, exc: Exception) -> ModelError | None:
    """The error for a checkpoint whose code ships with it, when `trust_remote_code` was not given."""
    if "trust_remote_code" not in str(exc):
        return None
    return ModelError(f"model {name!r} needs code that ships with the checkpoint (trust_remote_code); prunelab runs "
                      "it only when asked: set model.trust_remote_code: true (recorded in meta.json), after reading "
                      "that code")


def device_map(device: str, gpus: int | None = None) -> dict | str | None:
    """Where `from_pretrained` puts the weights. On a GPU they load straight onto it (no full copy in host memory
    first: that copy is what kills an 80 GiB pod loading a 70B model); where this process sees several GPUs (`gpus`,
    default: torch's count; an actor holding num_gpus > 1 sees exactly its own) the layers spread evenly over all of
    them, for models larger than one GPU. On the CPU: None (the plain load)."""
    if not device.startswith("cuda"):
        return None
    if gpus is None:
        gpus = torch.cuda.device_count()
    return "balanced" if device == "cuda" and gpus > 1 else {"": device}


def attention_kwargs(path, revision: str | None = None, trust_remote_code: bool = False) -> dict:
    """`from_pretrained` arguments for how a checkpoint's attention must run: eager for a family that softcaps its
    attention logits (Gemma 2): SDPA has no softcap and some transformers releases pick it, which changes every
    score; newer ones refuse SDPA for it. Nothing for every other family (its default)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return {"attn_implementation": "eager"} if getattr(text, "attn_logit_softcapping", None) else {}


def load_model(name: str, dtype: str = "auto", device: str = "cpu", revision: str | None = None,
               trust_remote_code: bool = False):
    """Returns (model, tokenizer), the model in eval mode on `device` (spread over every visible GPU for "cuda"
    where there are several: `device_map`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prunelab.models.view import view

    torch_dtype = resolve_dtype(dtype, device)
    path = resolve_model_path(name)
    placement = device_map(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, revision=revision,
                                                     trust_remote_code=trust_remote_code,
                                                     **({"device_map": placement} if placement else {}),
                                                     **attention_kwargs(path, revision, trust_remote_code))
    except (OSError, ValueError) as exc:
        if (remote := _remote_code_error(name, exc)) is not None:
            raise remote from exc
        if isinstance(exc, ValueError):
            raise
        raise ModelError(f"could not load model {name!r} from {path!r}: {exc}{_hub_hint(name, path)}") from exc
    view(model)  # the family's layout, checked before anyone removes a layer
    if placement is None:
        model.to(device)
    model.eval()
    return model, tokenizer


def load_tokenizer(name: str, revision: str | None = None, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = resolve_model_path(name)
    try:
        return AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise ModelError(f"could not load the tokenizer of {name!r} from {path!r}: {exc}"
                         f"{_hub_hint(name, path)}") from exc


@dataclass(frozen=True)
class ModelFacts:
    """What planning needs of a model, read without loading its weights."""

    path: str
    config: object
    tokenizer: object
    num_layers: int
    window: int | None  # the attention window of sliding-window layers, if any


def inspect_model(spec) -> ModelFacts:
    """Resolves a ModelSpec (name, revision) and reads its config and tokenizer; a `ModelError` names what failed.
    Nothing is written and no weights are read, so stages call it before touching their output directory."""
    from transformers import AutoConfig, AutoTokenizer

    from prunelab.models.view import attention_window, family_of, text_config

    path = resolve_model_path(spec.name)
    trust = getattr(spec, "trust_remote_code", False)
    try:
        config = AutoConfig.from_pretrained(path, revision=spec.revision, trust_remote_code=trust)
        tokenizer = AutoTokenizer.from_pretrained(path, revision=spec.revision, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        if (remote := _remote_code_error(spec.name, exc)) is not None:
            raise remote from exc
        raise ModelError(f"could not load model {spec.name!r}: {exc}{_hub_hint(spec.name, path)}") from exc
    family_of(config, spec.name)
    return ModelFacts(path, config, tokenizer, text_config(config).num_hidden_layers, attention_window(config))


def eos_token_ids(facts: ModelFacts) -> list[int]:
    """The tokens that end a generation: the generation config's end-of-sequence ids (chat models often list the
    end-of-turn token there) and the tokenizer's."""
    from transformers import GenerationConfig

    ids: set[int] = set()
    try:
        eos = GenerationConfig.from_pretrained(facts.path).eos_token_id
        ids |= {eos} if isinstance(eos, int) else set(eos or ())
    except OSError:
        pass  # no generation_config.json
    if facts.tokenizer.eos_token_id is not None:
        ids.add(facts.tokenizer.eos_token_id)
    return sorted(ids)
