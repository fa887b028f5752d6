"""What several sections of the pipeline's report page print alike: retention columns with intervals, the engine's
noise floor beside a generative comparison, a samples view, a long output clipped."""

from pathlib import Path

import pandas as pd

from prunelab.report import samples_view
from prunelab.report.tables import with_interval


def retention_columns(table: pd.DataFrame, tasks: dict, alpha: float = 0.05) -> pd.DataFrame:
    """Mean retentions (classification, generative) and each task's, as 'r [lo, hi]' with * where the adjusted
    p < alpha."""
    out = pd.DataFrame(index=table.index)
    for group in ("classification_mean", "generative_mean"):
        if group in table:
            out[group.replace("_", " ")] = with_interval(table, group, alpha)
    for task, desc in tasks.items():
        if task in table:
            out[f"{desc['label']}"] = with_interval(table, task, alpha)
    return out


def noise(page, meta: dict, tasks: dict) -> None:
    """The engine's noise floor beside a generative comparison (`execution.noise`), where it has generative tasks."""
    from prunelab.execution.noise import describe

    if any(desc["kind"] == "generative" for desc in tasks.values()):
        page.section("Engine noise floor", describe(meta.get("noise_floor"),
                                                    {t: d["label"] for t, d in tasks.items()}))


def samples_section(page, source: Path, heading: str, text: str, names: dict[str, str] | None = None) -> None:
    from prunelab.errors import ResultsError
    from prunelab.report.samples import samples

    try:
        table = samples(source)
    except ResultsError:
        return  # no generative task, or a run made before samples were kept
    if names:
        table = table.assign(candidate=[names.get(c, c) for c in table["candidate"]])
    fragment = samples_view.fragment(table, heading)
    if fragment:
        page.section(heading, text)
        page.samples(fragment, source)


def clip_text(value, width: int = 1200) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    return text if len(text) <= width else text[:width] + " ..."


__all__ = ["clip_text", "noise", "retention_columns", "samples_section"]
