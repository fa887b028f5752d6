"""Chat templates of reasoning families, written from the published templates (their generation prompts and
thinking switches verbatim; tool calls and multimodal parts left out), and tiny checkpoints that use them."""

import tiny
import torch

# Qwen3 (Qwen/Qwen3-8B tokenizer_config.json): turns before the last user message lose their reasoning, an assistant
# turn after it keeps it (what training on a reasoning response renders); the generation prompt closes an empty think
# block when enable_thinking is false
QWEN3 = (
    "{%- set ns = namespace(last_query=-1) %}"
    "{%- for message in messages %}{%- if message.role == 'user' %}{%- set ns.last_query = loop.index0 %}"
    "{%- endif %}{%- endfor %}"
    "{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- elif message.role == 'assistant' %}{%- set content = message.content %}{%- set reasoning = '' %}"
    "{%- if '</think>' in content %}"
    "{%- set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}{%- endif %}"
    "{%- if loop.index0 > ns.last_query and (loop.last or reasoning) %}"
    "{{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + content"
    " + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}{%- endif %}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)

# DeepSeek-R1 distills (0528 and later): the generation prompt opens the think block itself; no switch
R1 = (
    "{%- for message in messages %}"
    "{%- if message.role == 'user' %}{{- '<|im_start|>user\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}{%- set content = message.content %}"
    "{%- if '</think>' in content %}{%- set content = content.split('</think>')[-1] %}{%- endif %}"
    "{{- '<|im_start|>assistant\\n' + content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
)

# gpt-oss (openai/gpt-oss-20b chat_template.jinja): harmony; the system message carries the reasoning effort; the last
# assistant turn keeps its analysis (`thinking`)
HARMONY = (
    "{{- '<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\\n"
    "Knowledge cutoff: 2024-06\\n\\nReasoning: ' }}"
    "{{- reasoning_effort if reasoning_effort is defined else 'medium' }}"
    "{{- '\\n\\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>' }}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' %}{{- '<|start|>user<|message|>' + message.content + '<|end|>' }}"
    "{%- elif message.role == 'assistant' %}"
    "{%- if message.thinking is defined and message.thinking and loop.last %}"
    "{{- '<|start|>assistant<|channel|>analysis<|message|>' + message.thinking + '<|end|>' }}{%- endif %}"
    "{{- '<|start|>assistant<|channel|>final<|message|>' + message.content + '<|end|>' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start|>assistant' }}{%- endif %}"
)

CHATML = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

THINK = ["<think>", "</think>"]  # ordinary added tokens in these families (decoded, not skipped)
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>"]


def tokenizer(template: str):
    tok = _fresh()
    tok.add_tokens(THINK)
    tok.add_special_tokens({"additional_special_tokens": SPECIAL})
    tok.chat_template = template
    return tok


def _fresh():
    import copy

    return copy.deepcopy(tiny.tokenizer())


def save(path, template: str, family: str = "qwen3", num_layers: int = 4, hidden: int = 32):
    """A tiny random `family` model whose tokenizer holds the family's markers and `template`."""
    tok = tokenizer(template)
    model = tiny.model(family, num_layers, hidden=hidden)
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    with torch.no_grad():  # the added rows, seeded: the model stays a function of the test alone
        generator = torch.Generator().manual_seed(0)
        for matrix in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings())}.values():
            rows = matrix.weight[tiny.VOCAB:]
            rows.copy_(torch.randn(rows.shape, generator=generator) * 0.02)
    model.config.eos_token_id = [tiny.tokenizer().eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]
    model.generation_config.eos_token_id = model.config.eos_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
