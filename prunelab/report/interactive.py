"""The report page's interactive figures (plotly): the same data as the PNGs beside them, with a hover that shows
each point's value, its 95% interval and the items it rests on, and a legend whose entries toggle their series
(a task, a strategy, a method). Embedded in the page with plotly.js inline, so it works offline in one file.

    fig = layer_sensitivity(retention, tasks, legend)     # a plotly Figure
    embed(fig, "figure1_layers")                          # its <div> and script, byte-stable for the same data
"""

import math

import pandas as pd

HEIGHT = 420
ITEMS = "%{customdata[1]}"  # the hover's item count (`_hover`)
BASE_LINE = {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": 1, "y1": 1,
             "line": {"color": "grey", "dash": "dash", "width": 1}}


def _go():
    import plotly.graph_objects as go

    return go


def _value(x) -> float | None:
    """A number plotly can carry (None where missing: JSON has no NaN)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _items(x) -> str:
    return "" if _value(x) is None else f"{int(x)} items"


def _interval(rows: pd.DataFrame, column: str) -> dict:
    """Asymmetric error bars of `column` from its `:ci_low` / `:ci_high` columns, zero where there is none."""
    value, low, high = rows[column], rows[f"{column}:ci_low"], rows[f"{column}:ci_high"]
    return {"type": "data", "symmetric": False, "thickness": 1,
            "array": [0.0 if _value(h) is None or _value(v) is None else max(0.0, h - v) for v, h in zip(value, high)],
            "arrayminus": [0.0 if _value(lo) is None or _value(v) is None else max(0.0, v - lo)
                           for v, lo in zip(value, low)]}


def _hover(rows: pd.DataFrame, column: str, extra: list | None = None) -> list[list]:
    """customdata per point: [interval text, items, *extra] ("" where there is none)."""
    out = []
    for i, (_, r) in enumerate(rows.iterrows()):
        low, high = _value(r.get(f"{column}:ci_low")), _value(r.get(f"{column}:ci_high"))
        # as the tables print it (`tables.format_interval`)
        interval = f"[{low:.2f}, {high:.2f}]" if low is not None and high is not None else "(no interval)"
        out.append([interval, _items(r.get(f"{column}:items")), *(extra[i] if extra else [])])
    return out


def _layout(fig, title: str, height: int = HEIGHT, **axes) -> None:
    fig.update_layout(title={"text": title, "font": {"size": 14}}, height=height, template="plotly_white",
                      hovermode="closest", legend={"title": {"text": "click to hide or show"}},
                      margin={"l": 60, "r": 20, "t": 50, "b": 50}, **axes)


def layer_sensitivity(retention: pd.DataFrame, tasks: list[str], legend: dict[str, str]):
    """Figure 1: retention of each task against the removed layer, one series per task (toggle in the legend), the
    base model's level at 1."""
    from prunelab.report.plots import single_layer_rows
    from prunelab.results import Candidate

    go = _go()
    rows = single_layer_rows(retention)
    layers = [Candidate.parse(c).single_layer for c in rows]
    table = retention.loc[rows]
    fig = go.Figure()
    for i, task in enumerate(tasks):
        fig.add_trace(go.Scatter(
            x=layers, y=[_value(v) for v in table[task]], name=legend[task], mode="lines+markers",
            marker={"color": _color(i)}, line={"color": _color(i)},
            error_y=_interval(table, task), customdata=_hover(table, task),
            hovertemplate=(f"<b>{legend[task]}</b><br>layer %{{x}} removed<br>retention %{{y:.3f}} "
                           f"%{{customdata[0]}}<br>{ITEMS}<extra></extra>")))
    _layout(fig, "Layer sensitivity: retention with one layer removed", shapes=[BASE_LINE],
            xaxis={"title": "removed layer", "dtick": 1}, yaxis={"title": "retention (pruned / base)"})
    return fig


def strategies(table: pd.DataFrame, columns: list[str]):
    """Retention against the pruning ratio, one panel per task group, one series per strategy (toggled together
    across panels); with a single ratio, a dot plot of retention per strategy."""
    from plotly.subplots import make_subplots

    go = _go()
    groups = [c for c in columns if c.endswith("_mean")] or columns
    names = list(dict.fromkeys(table["strategy"]))
    single = table["ratio"].nunique() == 1
    labels = [c.replace("_mean", " mean").replace("_", " ") for c in groups]
    fig = make_subplots(rows=1, cols=len(groups), subplot_titles=labels, shared_yaxes=single)
    for col, (column, label) in enumerate(zip(groups, labels), start=1):
        for i, strategy in enumerate(names):
            rows = table[table["strategy"] == strategy].sort_values("ratio")
            extra = [[f"{r:g}", removed] for r, removed in zip(rows["ratio"], rows["removed"])]
            point = dict(name=strategy, legendgroup=strategy, showlegend=col == 1, customdata=_hover(rows, column, extra),
                         marker={"color": _color(i)}, line={"color": _color(i)},
                         hovertemplate=(f"<b>{strategy}</b> at ratio %{{customdata[2]}} (layers %{{customdata[3]}})"
                                        f"<br>{label} retention %{{{'x' if single else 'y'}:.3f}} %{{customdata[0]}}"
                                        f"<br>{ITEMS}<extra></extra>"))
            values = [_value(v) for v in rows[column]]
            if single:
                fig.add_trace(go.Scatter(x=values, y=[strategy] * len(rows), mode="markers",
                                         error_x=_interval(rows, column), **point), row=1, col=col)
            else:
                fig.add_trace(go.Scatter(x=list(rows["ratio"]), y=values, mode="lines+markers",
                                         error_y=_interval(rows, column), **point), row=1, col=col)
        if single:
            fig.add_vline(x=1, line={"color": "grey", "dash": "dash", "width": 1}, row=1, col=col)
            fig.update_xaxes(title_text=f"{label} retention", row=1, col=col)
        else:
            fig.add_hline(y=1, line={"color": "grey", "dash": "dash", "width": 1}, row=1, col=col)
            fig.update_xaxes(title_text="fraction of layers removed", row=1, col=col)
            fig.update_yaxes(title_text=f"{label} retention", row=1, col=col)
    ratio = f" (ratio {table['ratio'].iloc[0]:g})" if single else ""
    _layout(fig, f"Retention by strategy{ratio}", height=max(300, 120 + 40 * len(names)) if single else HEIGHT)
    if single:
        fig.update_yaxes(autorange="reversed")
    return fig


def methods(frame: pd.DataFrame):
    """Each recovery method's mean retention per task group against the pruning ratio (the methods table's rows:
    `_<group>`, `_<group>_low`, `_<group>_high`, `_<group>_items`), one series per method across panels."""
    from plotly.subplots import make_subplots

    go = _go()
    groups = [g for g in ("classification", "generative") if f"_{g}" in frame]
    fig = make_subplots(rows=1, cols=len(groups), subplot_titles=[f"{g} retention" for g in groups])
    for col, group in enumerate(groups, start=1):
        for i, (method, rows) in enumerate(frame.groupby("method", sort=False)):
            rows = rows.sort_values("ratio").rename(columns={
                f"_{group}": "v", f"_{group}_low": "v:ci_low", f"_{group}_high": "v:ci_high",
                f"_{group}_items": "v:items"})
            extra = [[t] for t in rows["target"]]
            fig.add_trace(go.Scatter(
                x=list(rows["ratio"]), y=[_value(v) for v in rows["v"]], name=method, legendgroup=method,
                showlegend=col == 1, mode="lines+markers", error_y=_interval(rows, "v"),
                marker={"color": _color(i)}, line={"color": _color(i)}, customdata=_hover(rows, "v", extra),
                hovertemplate=(f"<b>{method}</b> (%{{customdata[2]}})<br>{group} retention %{{y:.3f}} "
                               f"%{{customdata[0]}}<br>{ITEMS}<extra></extra>")), row=1, col=col)
        fig.add_hline(y=1, line={"color": "grey", "dash": "dash", "width": 1}, row=1, col=col)
        fig.update_xaxes(title_text="fraction of layers removed", tickvals=sorted(frame["ratio"].unique()),
                         row=1, col=col)
    _layout(fig, "Retention against the pruning ratio, per recovery method")
    return fig


def cost(points: pd.DataFrame):
    """Mean retention (classification, generative; 95% intervals) against the measured decode speed-up at batch 1
    (its interval over rounds) and against the memory saved; one point per pruned model and the base model.
    `points`: model, speedup (+ :ci_low/:ci_high), memory_saved, and `<group>_mean` with `:ci_low/:ci_high/:items`."""
    from plotly.subplots import make_subplots

    go = _go()
    fig = make_subplots(rows=1, cols=2, subplot_titles=["decode speed-up (batch 1)", "peak memory saved"],
                        shared_yaxes=True)
    for i, group in enumerate(g for g in ("classification", "generative") if f"{g}_mean" in points):
        column = f"{group}_mean"
        speed = [f"{s:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if _value(lo) is not None else "")
                 for s, lo, hi in zip(points["speedup"], points["speedup:ci_low"], points["speedup:ci_high"])]
        extra = [[m, s, f"{100 * saved:.1f}%"] for m, s, saved in zip(points["model"], speed, points["memory_saved"])]
        custom = [["(the reference: 1 by definition)", "", *e] if e[0] == "base" else c
                  for c, e in zip(_hover(points, column, extra), extra)]
        hover = (f"<b>%{{customdata[2]}}</b><br>{group} retention %{{y:.3f}} %{{customdata[0]}} "
                 f"{ITEMS}<br>speed-up %{{customdata[3]}}<br>memory saved %{{customdata[4]}}<extra></extra>")
        common = dict(name=group, legendgroup=group, mode="markers", customdata=custom,
                      y=[_value(v) for v in points[column]], error_y=_interval(points, column), hovertemplate=hover,
                      marker={"color": _color(i), "symbol": ["circle", "triangle-up"][i], "size": 9})
        fig.add_trace(go.Scatter(x=list(points["speedup"]), error_x=_interval(points, "speedup"), **common),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=[100 * m for m in points["memory_saved"]], showlegend=False, **common),
                      row=1, col=2)
    fig.update_xaxes(title_text="speed-up over the base model", row=1, col=1)
    fig.update_xaxes(title_text="memory saved (%)", row=1, col=2)
    fig.update_yaxes(title_text="mean retention", row=1, col=1)
    _layout(fig, "Retention against what the cut buys")
    return fig


def lines(curves: dict[str, pd.DataFrame], x: str, y: str, title: str, xlabel: str, ylabel: str,
          log_y: bool = False, base: float | None = None):
    """Plain series (training curves, the arithmetic probe): one per entry of `curves`, hover shows x and y."""
    go = _go()
    fig = go.Figure()
    for i, (label, table) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=list(table[x]), y=[_value(v) for v in table[y]], name=label,
                                 mode="lines+markers", marker={"color": _color(i)}, line={"color": _color(i)},
                                 hovertemplate=f"<b>{label}</b><br>{xlabel} %{{x}}<br>{ylabel} %{{y:.4g}}"
                                               "<extra></extra>"))
    shapes = [BASE_LINE | {"y0": base, "y1": base}] if base is not None else []
    _layout(fig, title, shapes=shapes, xaxis={"title": xlabel},
            yaxis={"title": ylabel, **({"type": "log"} if log_y else {})})
    return fig


def probe(table: pd.DataFrame, base: dict[str, float]):
    """The arithmetic probe per removed layer: accuracy and the target digit's log-probability, each against the
    base model's level (`base`: column -> its value)."""
    from plotly.subplots import make_subplots

    go = _go()
    columns = list(base)
    fig = make_subplots(rows=1, cols=len(columns), subplot_titles=columns)
    for col, column in enumerate(columns, start=1):
        fig.add_trace(go.Scatter(x=list(table["removed layer"]), y=[_value(v) for v in table[column]], name=column,
                                 mode="lines+markers", marker={"color": _color(0)}, line={"color": _color(0)},
                                 hovertemplate=f"layer %{{x}} removed<br>{column} %{{y:.4g}} (base "
                                               f"{base[column]:.4g})<extra></extra>"), row=1, col=col)
        fig.add_hline(y=base[column], line={"color": "grey", "dash": "dash", "width": 1}, row=1, col=col)
        fig.update_xaxes(title_text="removed layer", row=1, col=col)
    _layout(fig, "The arithmetic probe per removed layer", height=360)
    fig.update_layout(showlegend=False)
    return fig


def stacked_bars(table: pd.DataFrame, label: str, parts: list[str], title: str, xlabel: str):
    """Horizontal bars, one per row of `table` (named by its `label` column), stacked from its `parts` columns;
    each part a legend entry that hides or shows it."""
    go = _go()
    fig = go.Figure()
    for i, part in enumerate(parts):
        fig.add_trace(go.Bar(y=list(table[label]), x=[_value(v) for v in table[part]], name=part, orientation="h",
                             marker={"color": _color(i)},
                             hovertemplate=f"%{{y}}<br>{part}: %{{x:.3f}}<extra></extra>"))
    _layout(fig, title, height=max(260, 120 + 28 * len(table)), barmode="stack", xaxis={"title": xlabel},
            yaxis={"autorange": "reversed"})
    return fig


def _color(i: int) -> str:
    """matplotlib's default cycle, so a series has the same colour in the PNG and on the page."""
    cycle = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
             "#17becf"]
    return cycle[i % len(cycle)]


def embed(fig, name: str) -> str:
    """The figure's <div> and the script that draws it (plotly.js itself comes once per page: `script`)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{name}",
                       config={"displaylogo": False, "responsive": True,
                               "toImageButtonOptions": {"filename": name, "scale": 2}})


def script() -> str:
    """plotly.js, inline (about 4.6 MB): the page needs no network."""
    from plotly.offline import get_plotlyjs

    return f"<script>{get_plotlyjs()}</script>"
