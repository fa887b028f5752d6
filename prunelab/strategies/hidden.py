"""One batched pass over calibration texts that reads every decoder layer's input and output (forward hooks), for
the similarity-based strategies. Texts are right-padded in batches of similar length; padding never enters a
statistic."""

from collections.abc import Callable, Sequence

import torch

from prunelab.surgery import decoder


@torch.inference_mode()
def layer_passes(model, tokenizer, texts: Sequence[str], visit: Callable[[list[torch.Tensor], torch.Tensor], None],
                 max_length: int = 512, batch_size: int = 8) -> None:
    """Calls `visit(states, mask)` per batch: `states[i]` is the input of layer i (the last one is the last layer's
    output, before the final norm), each [batch, seq, hidden] in fp32; `mask` is [batch, seq], 1 on real tokens."""
    layers = decoder(model).layers
    states: list[torch.Tensor | None] = [None] * (len(layers) + 1)

    def keep_input(i):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            states[i] = hidden.float()
        return hook

    def keep_output(module, args, kwargs, output):
        states[-1] = (output[0] if isinstance(output, tuple) else output).float()

    hooks = [layer.register_forward_pre_hook(keep_input(i), with_kwargs=True) for i, layer in enumerate(layers)]
    hooks.append(layers[-1].register_forward_hook(keep_output, with_kwargs=True))
    device = next(model.parameters()).device
    encoded = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    try:
        for start in range(0, len(order), batch_size):
            batch = [encoded[i] for i in order[start : start + batch_size]]
            width = max(len(ids) for ids in batch)
            ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in batch], device=device)
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch], device=device)
            # the decoder stack alone: no output head, which is a large share of a small model's compute
            decoder(model)(input_ids=ids, attention_mask=mask, use_cache=False)
            visit(list(states), mask)
    finally:
        for h in hooks:
            h.remove()
