"""One batched pass over calibration texts that reads every decoder layer's input and output (forward hooks), for
the similarity-based strategies. Texts are right-padded in batches of similar length; padding never enters a
statistic."""

from collections.abc import Callable, Sequence

import torch

from prunelab.models.view import view


@torch.inference_mode()
def layer_passes(model, tokenizer, texts: Sequence[str], visit: Callable[[list[torch.Tensor], torch.Tensor], None],
                 max_length: int = 512, batch_size: int = 8, progress: bool = False) -> None:
    """Calls `visit(states, mask)` per batch: `states[i]` is the input of layer i (the last one is the last layer's
    output, before the final norm), each [batch, seq, hidden] in fp32; `mask` is [batch, seq], 1 on real tokens.
    `progress`: texts done, in a terminal and in a log (`prunelab.progress`)."""
    from prunelab.progress import bar

    v = view(model)

    def keep_output(module, args, kwargs, output):
        last.append(output[0] if isinstance(output, tuple) else output)

    last: list[torch.Tensor] = []
    hook = v.layers[-1].register_forward_hook(keep_output, with_kwargs=True)
    device = v.device
    encoded = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    shown = bar(total=len(order), desc="calibration", unit="text", disable=not progress)
    try:
        for start in range(0, len(order), batch_size):
            batch = [encoded[i] for i in order[start : start + batch_size]]
            width = max(len(ids) for ids in batch)
            ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in batch], device=device)
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch], device=device)
            # the decoder stack alone: no output head, which is a large share of a small model's compute
            last.clear()
            with v.recording() as inputs:
                v.decoder(input_ids=ids, attention_mask=mask, use_cache=False)
            visit([h.float().to(device) for h in [*inputs, *last]], mask)
            shown.update(len(batch))
    finally:
        shown.close()
        hook.remove()
