"""Block influence (ShortGPT; Men et al., 2024): removes the n layers of lowest BI_i = 1 - E_t[cos(x_i,t, x_i+1,t)]
over every calibration token (x_i: layer i's input). Scores come from `similarity.calibration_pass`."""

from prunelab.strategies.base import Context, Selection


def select(n: int, ctx: Context, settings) -> Selection:
    bi, _ = ctx.calibration()
    removed = sorted(sorted(range(ctx.num_layers), key=lambda layer: bi[layer])[:n])
    return Selection("block_influence", removed, {str(layer): v for layer, v in enumerate(bi)})
