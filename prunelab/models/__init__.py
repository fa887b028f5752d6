from prunelab.models.builtin import BUILTIN_MODELS, builtin_model_dir
from prunelab.models.loading import ModelFacts, inspect_model, load_model, load_tokenizer, resolve_model_path

__all__ = ["BUILTIN_MODELS", "ModelFacts", "builtin_model_dir", "inspect_model", "load_model", "load_tokenizer",
           "resolve_model_path"]
