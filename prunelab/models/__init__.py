from prunelab.models.builtin import BUILTIN_MODELS, builtin_model_dir
from prunelab.models.loading import load_model, load_tokenizer, resolve_model_path

__all__ = ["BUILTIN_MODELS", "builtin_model_dir", "load_model", "load_tokenizer", "resolve_model_path"]
