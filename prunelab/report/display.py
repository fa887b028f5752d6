"""How a report table reads to a person, apart from what its CSV holds: the CSV keeps every digit; the page shows
units (MiB, millions of parameters, percent) and three significant digits.

    csv_cell(0.9007936507936508)             -> "0.9007936507936508"   (round-trips)
    header("weight_mb"), cell("weight_mb", "1201.949") -> "weights (MiB)", "1,202"
"""

import math

import pandas as pd

# raw column -> (what the page calls it, the factor its values are shown at)
UNITS: dict[str, tuple[str, float]] = {
    "weight_mb": ("weights (MiB)", 1.0),
    "peak_load_mb": ("peak while loading (MiB)", 1.0),
    "peak_generate_mb": ("peak while generating (MiB)", 1.0),
    "engine_reserved_mb": ("engine reserved (MiB)", 1.0),
    "kv_kb_per_token": ("KV cache (KiB/token)", 1.0),
    "parameters": ("parameters (M)", 1e-6),
    "trainable parameters": ("trainable parameters (M)", 1e-6),
    "memory_saved": ("memory saved (%)", 100.0),
    "memory saved": ("memory saved (%)", 100.0),
    "ttft_ms": ("time to first token (ms)", 1.0),
}
TEXT = {"key", "stage", "model", "target", "method", "task", "removed"}  # never read as numbers
RATES = {"prefill_tps": "prefill", "decode_b1_tps": "decode, batch 1", "decode_batch_tps": "decode, batched"}


def csv_cell(value) -> str:
    """Every digit of a number (the shortest text that reads back as the same float); other values as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(float(value))
    return str(value)


def header(column: str) -> str:
    if column in UNITS:
        return UNITS[column][0]
    base, _, suffix = column.partition(":")
    if base in RATES:
        return f"{RATES[base]} (tok/s{', ' + suffix if suffix else ''})"
    return column.replace("_", " ")


def number(x: float) -> str:
    """Three significant digits; thousands separated, no exponent."""
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    text = f"{x:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def is_number(column: str, raw: str) -> bool:
    if column in TEXT:
        return False
    try:
        return math.isfinite(float(raw))
    except ValueError:
        return False


def cell(column: str, raw: str) -> str:
    """What the page shows for the CSV text `raw` of `column`: numbers readable and in the column's unit, any other
    text (intervals, names) as it is."""
    if column in TEXT:
        return raw
    try:
        value = float(raw)
    except ValueError:
        return raw
    if math.isnan(value):
        return ""
    if math.isinf(value):
        return raw
    if raw.lstrip("-").isdigit() and column not in UNITS:  # counts: steps, tokens, layers
        return f"{int(raw):,}"
    return number(value * UNITS.get(column, ("", 1.0))[1])


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """A CSV's text frame as the page shows it."""
    return pd.DataFrame({header(c): [cell(c, v) for v in frame[c]] for c in frame.columns})
