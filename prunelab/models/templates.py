"""Chat templates for SGR and recovery: the tokenizer's own, prunelab's plain fallback for base models, or a file.

The template that renders the SGR prompts is stored in the corpus's meta.json, and recovery trains with the same
one (and saves it with the recovered model), so the recovered model is asked questions the way it was trained.
"""

import hashlib
from pathlib import Path

from prunelab.errors import ConfigError, ModelError

# A minimal template for base models (no chat template of their own). The assistant turn ends with the EOS token,
# so a model fine-tuned on it learns to stop; BOS is rendered here, since chat rendering adds no special tokens.
PLAIN_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### User:\n{{ m['content'] }}\n\n"
    "{% else %}### Assistant:\n{{ m['content'] }}{{ eos_token }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


def resolve_template(setting: str, tokenizer, model_name: str) -> str:
    """The Jinja chat template a config's `chat_template` setting (auto, plain, or a file path) stands for."""
    if setting == "plain":
        return PLAIN_TEMPLATE
    if setting == "auto":
        template = getattr(tokenizer, "chat_template", None)
        if not template:
            raise ModelError(
                f"model {model_name!r} has no chat template (a base model, such as gemma3-270m): SGR asks it to answer "
                "chat prompts and recovery trains on chat turns. Fallback: set chat_template: plain to use "
                "prunelab's '### User: / ### Assistant:' template (it is stored in the corpus's meta.json, recovery "
                "trains with it and saves it with the recovered model), or chat_template: path/to/template.jinja")
        return template
    path = Path(setting).expanduser()
    if not path.is_file():
        raise ConfigError(f"chat_template {setting!r} is neither auto, plain nor an existing Jinja template file")
    return path.read_text()


def apply_template(tokenizer, template: str):
    """The tokenizer with `template` as its chat template (it is saved with the tokenizer)."""
    tokenizer.chat_template = template
    return tokenizer


def template_hash(template: str) -> str:
    return hashlib.sha256(template.encode()).hexdigest()
