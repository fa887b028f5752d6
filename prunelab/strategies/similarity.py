"""Scores from hidden-state similarity (one batched pass over calibration texts).

Block influence (ShortGPT; Men et al., 2024, "ShortGPT: Layers in Large Language Models are More Redundant Than You
Expect"): BI_i = 1 - E_t[cos(x_i,t, x_{i+1,t})] over every token t of every calibration text, where x_i is layer i's
input and x_{i+1} its output. Layers with the lowest BI change their input least and are removed first.

Angular distance (Gromov et al., 2024, "The Unreasonable Ineffectiveness of the Deeper Layers"): for blocks of n
layers, d(l, n) = arccos(cos(x_l, x_{l+n})) / pi at each text's last token, averaged over texts; the contiguous block
l .. l+n-1 with the smallest d is removed.
"""

import math

import torch

from prunelab.strategies.hidden import layer_passes


def calibration_pass(model, tokenizer, texts, max_length: int = 512, batch_size: int = 8, progress: bool = False,
                     ) -> tuple[list[float], torch.Tensor]:
    """Both strategies' statistics from one pass: (BI per layer, `last_token_states`)."""
    sums, count, rows = None, 0, []

    def visit(states, mask):
        nonlocal sums, count
        real = mask.bool()
        cos = torch.stack([torch.nn.functional.cosine_similarity(a, b, dim=-1)[real]
                           for a, b in zip(states[:-1], states[1:])])  # [layers, real tokens]
        sums = cos.sum(1) if sums is None else sums + cos.sum(1)
        count += int(real.sum())
        last = mask.sum(1) - 1
        batch = torch.arange(mask.shape[0], device=mask.device)
        rows.append(torch.stack([s[batch, last] for s in states], dim=1).cpu())

    layer_passes(model, tokenizer, texts, visit, max_length, batch_size, progress)
    return [1.0 - float(s) / count for s in sums], torch.cat(rows)


def block_influence(model, tokenizer, texts, max_length: int = 512, batch_size: int = 8) -> list[float]:
    """BI per layer (lower = more redundant)."""
    return calibration_pass(model, tokenizer, texts, max_length, batch_size)[0]


def last_token_states(model, tokenizer, texts, max_length: int = 512, batch_size: int = 8) -> torch.Tensor:
    """[texts, layers + 1, hidden]: every layer's input at each text's last token, then the last layer's output."""
    return calibration_pass(model, tokenizer, texts, max_length, batch_size)[1]


def angular_distances(states: torch.Tensor, n: int) -> list[float]:
    """d(l, n) for l = 0 .. layers - n, from `last_token_states`."""
    layers = states.shape[1] - 1
    out = []
    for l in range(layers - n + 1):
        cos = torch.nn.functional.cosine_similarity(states[:, l], states[:, l + n], dim=-1).clamp(-1, 1)
        out.append(float(torch.arccos(cos).mean()) / math.pi)
    return out
