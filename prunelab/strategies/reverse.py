"""Reverse order: the last n layers (Gromov et al.'s and many others' baseline); `keep_last` keeps the final layer."""

from prunelab.strategies.base import Context, Selection


def select(n: int, ctx: Context, settings) -> Selection:
    keep_last = settings.keep_last
    last = ctx.num_layers - 1 if keep_last else ctx.num_layers
    return Selection("reverse", list(range(last - n, last)), {str(layer): float(layer) for layer in
                                                              range(ctx.num_layers)}, {"keep_last": keep_last})
