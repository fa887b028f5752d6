"""Angular distance (Gromov et al., 2024): removes the contiguous block l .. l+n-1 whose input and output are closest
in angle, arccos(cos(x_l, x_l+n)) / pi at each calibration text's last token, averaged over texts."""

from prunelab.strategies.base import Context, Selection
from prunelab.strategies.similarity import angular_distances


def select(n: int, ctx: Context, settings) -> Selection:
    _, last_states = ctx.calibration()
    distances = angular_distances(last_states, n)
    start = min(range(len(distances)), key=lambda layer: distances[layer])
    return Selection("angular", list(range(start, start + n)),
                     {f"{layer}-{layer + n - 1}": d for layer, d in enumerate(distances)}, {"block_size": n})
