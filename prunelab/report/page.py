"""The pipeline's report: `report.md` and one self-contained `report.html` (figures embedded), with the paper's views,
from the stage directories named in `pipeline.json` (their retention CSVs, meta.json and curves) alone:

    Table 1     retention by strategy x ratio: classification vs generative means, 95% intervals, per task
    Tables 2-3  recovery: pruned, + SFT on original answers, + SFT on SGR, + each other method, against the base model
    methods     every recovery method at every ratio: retention, paired differences against the pruned model and
                against SFT on SGR, the training budget; a figure of retention against the pruning ratio per method
    Figure 1    retention against the removed layer, per task (the single-layer sweep)
    probe       the arithmetic probe per removed layer: accuracy and the target digit's log-probability
    degeneration  Rep-n and Self-BLEU-4 of each model's generations, minus the base model's
    code errors   the error taxonomy of generated code per model: brackets, other syntax, truncation, the rest
    training    training perplexity per step of every recovery run
    cost        retention against measured decode speed-up and memory saved, per strategy x ratio (with `cost:`)
    examples    for each pruned model, items the base model solved and it lost, with both outputs

Every table on the page is a CSV under `report/tables/`, printed cell for cell as the CSV holds it, so the page and
the files cannot disagree (a browser test checks it).
"""

import base64
import html
from pathlib import Path

import pandas as pd

from prunelab.artifacts import (
    COMPARE_STAGE,
    COST_STAGE,
    SWEEP_STAGE,
    ArtifactMissing,
    CompareArtifact,
    CostArtifact,
    EvalArtifact,
    PipelineArtifact,
    RecoverArtifact,
    SweepArtifact,
    eval_stage,
    recover_stage,
)
from prunelab.atomic import write_text
from prunelab.config import PipelineRecover, StatsSpec, recovery_arms, seeded_arms
from prunelab.report import display, samples_view
from prunelab.report import findings as paper
from prunelab.report import interactive as plotly
from prunelab.report.plots import _figure, _save, dodge, single_layer_rows
from prunelab.report.tables import format_interval, with_interval
from prunelab.results import Candidate

ERROR_GROUPS = {"bracket": ["err_bracket"], "other syntax": ["err_syntax"], "truncated": ["err_truncated"],
                "runtime": ["err_undefined_name", "err_timeout", "err_assertion", "err_other"]}
DEGENERATION = ("rep2", "rep3", "rep4", "self_bleu4")
# a click on a column's header sorts its table by that column (numbers by value, text alphabetically; again: reversed)
SORT_SCRIPT = """<script>
document.querySelectorAll('th[data-column]').forEach((th) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], col = th.cellIndex, up = th.dataset.order !== 'up';
  const key = (row) => { const v = row.cells[col].dataset.value, n = parseFloat(v);
    return v !== '' && !isNaN(n) && isFinite(v) ? [0, n] : [1, v]; };
  const rows = [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
    const d = x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0); return up ? d : -d; });
  th.dataset.order = up ? 'up' : 'down'; rows.forEach((r) => body.appendChild(r));
}));
</script>"""
# the page records in <body data-*> whether every figure drew, for a browser (and a test) to read back: PNGs decoded,
# interactive figures drawn (an SVG with a point for every value: a retention the base model leaves undefined has none)
CHECK_SCRIPT = """<script>
window.addEventListener('load', () => { const imgs = [...document.images], plots = [...document.querySelectorAll('.plotly-graph-div')];
  const data = document.body.dataset;
  data.figures = imgs.length; data.figuresLoaded = imgs.filter((i) => i.complete && i.naturalWidth > 0).length;
  data.interactive = plots.length;
  const values = (p) => p.data.reduce((n, t) => n + (t.x || []).filter((x, i) => x !== null && t.y[i] !== null).length, 0);
  data.interactiveDrawn = plots.filter((p) => p.querySelector('.main-svg')
    && p.querySelectorAll('.point').length >= values(p)).length;
});
</script>"""
FINDINGS_NOTE = ("The paper's findings, checked on this run by code from the tables below, each by one declared "
                 "test. Retention = metric / the base model's, with a 95% bootstrap interval; a verdict needs p < "
                 "alpha after adjustment for the number of tests in its family (paired sign-flip or exact McNemar "
                 "between models on the same items, a bootstrap test between task groups); \"cannot be tested at "
                 "this size\" where no outcome on these items could reach it. Where an interval and a test "
                 "disagree, the test decides.")


class Page:
    """Sections of tables (written as CSVs) and figures, rendered to markdown and to one HTML file."""

    def __init__(self, root: Path, title: str):
        self.root, self.title, self.sections, self.findings = root, title, [], []
        (root / "tables").mkdir(parents=True, exist_ok=True)
        (root / "figures").mkdir(parents=True, exist_ok=True)

    def section(self, heading: str, text: str = "") -> None:
        self.sections.append({"heading": heading, "text": text, "parts": []})

    def table(self, name: str, frame: pd.DataFrame) -> None:
        frame = frame.map(display.csv_cell)
        path = write_text(self.root / "tables" / f"{name}.csv", frame.to_csv(index=False))
        # the page prints the CSV as written (read back as text), so its numbers are the file's
        self.sections[-1]["parts"].append(("table", path, pd.read_csv(path, dtype=str, keep_default_na=False)))

    def figure(self, path: Path, caption: str, name: str | None = None, interactive=None) -> None:
        """A figure of the report; one from a stage directory is copied under report/figures/ (as `name`). With
        `interactive` (a plotly figure of the same data), the page draws that one and keeps the PNG below it."""
        if not path.exists():
            raise ArtifactMissing(f"the report's figure {str(path)!r} is missing")
        if self.root not in path.parents:
            copy = self.root / "figures" / (name or path.name)
            copy.write_bytes(path.read_bytes())
            path = copy
        drawn = plotly.embed(interactive, path.stem) if interactive is not None else None
        self.sections[-1]["parts"].append(("figure", path, (caption, drawn)))

    def samples(self, fragment: str, source: Path) -> None:
        """The samples view of one set of models (`samples_view.fragment`); the markdown points to it."""
        self.sections[-1]["parts"].append(("samples", source, fragment))

    def example(self, heading: str, blocks: list[tuple[str, str]]) -> None:
        """A worked example: a heading and (label, verbatim text) blocks, e.g. two outputs side by side."""
        self.sections[-1]["parts"].append(("example", heading, blocks))

    def markdown(self) -> str:
        out = [f"# {self.title}\n"]
        if self.findings:
            out.append(f"## Findings\n\n{FINDINGS_NOTE}\n\n{paper.markdown(self.findings)}")
        for s in self.sections:
            out.append(f"## {s['heading']}\n\n{s['text']}\n" if s["text"] else f"## {s['heading']}\n")
            for kind, path, body in s["parts"]:
                if kind == "table":
                    out.append(display.readable(body).to_markdown(index=False, disable_numparse=True)
                               + f"\n\n(`{path.relative_to(self.root)}`)\n")
                elif kind == "samples":
                    out.append(f"In `report.html` (filterable), or: `prunelab samples {path}`\n")
                elif kind == "example":
                    out.append(f"**{path}**\n\n" + "\n".join(f"{label}:\n```\n{text}\n```\n" for label, text in body))
                else:
                    out.append(f"![{body[0]}]({path.relative_to(self.root)})\n")
        return "\n".join(out)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        if self.findings:
            items = "".join(
                f"<li><b>{html.escape(f.claim)}</b> <span class=verdict data-verdict=\"{html.escape(f.verdict)}\">"
                f"{html.escape(f.verdict.capitalize())}.</span><ul>"
                + "".join(f"<li>{html.escape(e)}</li>" for e in f.evidence) + "</ul></li>" for f in self.findings)
            body.append(f"<section id=findings><h2>Findings</h2><p>{html.escape(FINDINGS_NOTE)}</p><ul>{items}</ul>"
                        "</section>")
        for s in self.sections:
            body.append(f"<h2>{html.escape(s['heading'])}</h2>")
            if s["text"]:
                body.append(f"<p>{html.escape(s['text'])}</p>")
            for kind, path, content in s["parts"]:
                if kind == "table":
                    rel = html.escape(str(path.relative_to(self.root)))
                    # the cell shows the value in its unit; data-value holds the CSV's text (sorting reads it)
                    head = "".join(f'<th data-column="{html.escape(c)}" title="sort">{html.escape(display.header(c))}'
                                   "</th>" for c in content.columns)
                    rows = "".join("<tr>" + "".join(f'<td data-value="{html.escape(v)}"'
                                                    f'{" class=num" if display.is_number(c, v) else ""}>'
                                                    f"{html.escape(display.cell(c, v))}</td>"
                                                    for c, v in zip(content.columns, row)) + "</tr>"
                                   for row in content.itertuples(index=False))
                    body.append(f'<div class=scroll><table data-csv="{rel}"><thead><tr>{head}</tr></thead><tbody>'
                                f"{rows}</tbody></table></div><p class=src>{rel} (every digit)</p>")
                elif kind == "samples":
                    body.append(content)
                elif kind == "example":
                    cells = "".join(f"<div><b>{html.escape(label)}</b><pre>{html.escape(text)}</pre></div>"
                                    for label, text in content)
                    body.append(f"<details><summary>{html.escape(path)}</summary><div class=pair>{cells}</div>"
                                "</details>")
                else:
                    caption, drawn = content
                    image = (f'<img alt="{html.escape(caption)}" src="data:image/png;base64,'
                             f'{base64.b64encode(path.read_bytes()).decode()}">')
                    if drawn:  # the interactive figure, and the PNG of the same data for printing or saving
                        image = (f"<div class=interactive>{drawn}</div><details><summary>static figure (PNG)"
                                 f"</summary>{image}</details>")
                    body.append(f"<figure>{image}<figcaption>{html.escape(caption)}</figcaption></figure>")
        interactive = any(kind == "figure" and content[1] for s in self.sections for kind, _, content in s["parts"])
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}table{border-collapse:"
                 "collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}th{cursor:pointer;background:"
                 "#f3f3f3}td{white-space:nowrap}td.num{text-align:right}.scroll{overflow-x:auto;margin:.5em 0}img{max-width:"
                 "100%}.src{color:#777;font-size:11px}.pair{display:flex;gap:1em}.pair>div{flex:1;min-width:0}pre{white-space:"
                 "pre-wrap;background:#f6f6f6;padding:.5em;font-size:12px}#findings li{margin:.3em 0}.verdict{font-"
                 "weight:bold;color:#1a5}.verdict[data-verdict^='not'],.verdict[data-verdict^='does']{color:#b50}.verdict[data-verdict^='holds in']{color:#a70}"
                 ".verdict[data-verdict^='cannot'],.verdict[data-verdict^='no method'],.verdict[data-verdict^='mixed']"
                 "{color:#777}"
                 "figure{margin:1em 0}figure details summary{color:#777;font-size:12px;cursor:pointer}"
                 + samples_view.STYLE)
        return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(self.title)}</title><style>"
                f"{style}</style>{plotly.script() if interactive else ''}</head><body>{''.join(body)}{CHECK_SCRIPT}"
                f"{SORT_SCRIPT}{samples_view.SCRIPT}</body></html>")
def _retention_columns(table: pd.DataFrame, tasks: dict, alpha: float = 0.05) -> pd.DataFrame:
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


def _noise(page: Page, meta: dict, tasks: dict) -> None:
    """The engine's noise floor beside a generative comparison (`execution.noise`), where it has generative tasks."""
    from prunelab.execution.noise import describe

    if any(desc["kind"] == "generative" for desc in tasks.values()):
        page.section("Engine noise floor", describe(meta.get("noise_floor"),
                                                    {t: d["label"] for t, d in tasks.items()}))


def _strategies(page: Page, compare: CompareArtifact, alpha: float) -> None:
    table = compare.strategies()
    page.section("Table 1: retention by strategy and ratio",
                 "Classification against generative retention of each strategy's pruned model (retention = metric "
                 f"/ the base model's, 95% paired bootstrap interval; * differs from the base model, p < {alpha:g} after "
                 "Holm's adjustment over the table's pruned models).")
    cols = _retention_columns(table, compare.tasks(), alpha)
    page.table("table1_strategies", pd.concat([table[["strategy", "ratio", "removed"]], cols], axis=1))
    columns = [t for t in compare.tasks() if t in table] + [g for g in ("classification_mean", "generative_mean")
                                                             if g in table]
    page.figure(compare.strategies_plot(), "Retention by strategy and ratio", "table1_strategies.png",
                plotly.strategies(table, columns))
    _noise(page, compare.meta(), compare.tasks())


def _strategy_gaps(compare: CompareArtifact) -> dict[str, tuple[float, float, float, float]]:
    """"strategy@ratio" -> (classification (chance-normalised) minus generative retention, its 95% interval, its
    bootstrap p), from the compare stage's per-item results."""
    from prunelab.report.retention import group_gap
    from prunelab.results import ResultsStore

    keys = {Candidate(tuple(c.removed)).name: key for key, c in compare.selections().items()}
    frame = group_gap(ResultsStore(compare.root).read(), compare.tasks(), list(keys))
    return {keys[r[0]]: (r[1], r[2], r[3], r[4]) for r in frame.itertuples(index=False)}


def _layer_groups(sweep: SweepArtifact) -> dict:
    """(a)'s group test from the sweep's per-item results (`retention.layer_groups`)."""
    from prunelab.report.retention import layer_groups
    from prunelab.results import ResultsStore

    rows = [str(i) for i in single_layer_rows(sweep.retention())]
    return layer_groups(ResultsStore(sweep.root).read(), sweep.tasks(), rows)


def arm_label(arm: str, recover: dict) -> str:
    """How a recovery arm reads in the report: sft arms by their responses (as before other methods existed), every
    other arm as its method calls itself (`prunelab.recovery.registry`)."""
    from prunelab.recovery.registry import method

    if arm in ("sgr", "reference"):
        return f"SFT {arm}"
    return method(arm).label(recover)


def _seed_runs(section: PipelineRecover, target: str, names: dict[str, str], stages: dict
               ) -> tuple[list[tuple], dict[str, list[tuple[str, int]]]]:
    """The evaluations of a target's arms trained with more than one seed: (label, directory, stage arm) of each
    run after the first, and `combine_evals`' seeds mapping (the method's label -> [(each run's label, seed)])."""
    runs, members = [], {}
    for stage_arm, arm, _, _, seed in seeded_arms(section):
        label = f"+ {names[arm]} ({target})"
        if stage_arm != arm:
            runs.append((f"{label} [seed {seed}]", stages.get(eval_stage(target, stage_arm)), stage_arm))
            members.setdefault(label, []).append((runs[-1][0], seed))
        else:
            members[label] = [(label, seed)]
    return runs, {label: m for label, m in members.items() if len(m) > 1}


def _recovery(page: Page, groups: dict, out: Path, budgets: dict, names: dict[str, str], stats: dict,
              seed_runs: dict | None = None) -> list[paper.Finding]:
    """Tables 2-3 per target, then every arm of every target in one table (retention, paired differences against
    the pruned model and against SFT on SGR, the training budget) and one figure against the pruning ratio.
    `names`: arm -> how the report calls it. Returns the findings these tables show."""
    from prunelab.report import combine_evals

    if not groups:
        return []
    head_to_heads, shares, leads = {}, {}, {}
    page.section("Tables 2-3: recovery by method",
                 "Each model against the base model, on the same items (* p < alpha after Holm's adjustment over the "
                 "table's models: one family per column).")
    methods = []
    for target, rows in groups.items():
        runs, seeds = (seed_runs or {}).get(target, ([], {}))
        dirs = [Path(d) for _, d, _ in rows + runs]
        combined = out / f"recovery-{target.replace('@', '-at-')}"
        labels = [label for label, _, _ in rows + runs]
        by_arm = {arm: label for label, _, arm in rows}
        versus = (by_arm["sgr"], by_arm["reference"]) if {"sgr", "reference"} <= set(by_arm) else None
        references = [labels[0], *([by_arm["sgr"]] if "sgr" in by_arm else [])]
        paths = combine_evals(dirs, combined, labels, title=f"Recovery of {target}", versus=versus,
                              references=references, stats=stats, seeds=seeds)
        spread = pd.read_csv(paths["seeds"]) if "seeds" in paths else pd.DataFrame()
        table = EvalArtifact(combined).retention()  # the combined table has an eval directory's layout
        tasks = EvalArtifact(dirs[0]).tasks()
        name = target.replace("@", "_")
        page.table(f"table2_recovery_{name}", _retention_columns(table, tasks, stats["alpha"]).reset_index(names="model"))
        _noise(page, EvalArtifact(dirs[0]).meta(), tasks)
        if versus is not None:
            page.section(f"SGR against the original answers ({target})",
                         "Both recovered models against the base model on the same items: each one's retention, "
                         "SGR's minus the original answers' with a 95% paired bootstrap interval (items resampled "
                         "once for all three models), and a paired sign-flip test of one against the other "
                         "(* p < 0.05; the generative mean is the primary endpoint, the task rows describe it).")
            head_to_heads[target] = pd.read_csv(paths["head_to_head"])
            page.table(f"sgr_vs_reference_{name}", _difference_table(head_to_heads[target]))
        gap = pd.read_csv(paths["gap"])
        against = pd.read_csv(paths["against"])
        shares[target] = pd.read_csv(paths["shares"])
        lead = pd.read_csv(paths["lead"])
        if not lead.empty:
            leads[target] = lead.iloc[0].to_dict()
        if not gap.empty:
            page.section(f"Classification against generative retention ({target})",
                         "Per model: classification mean retention (chance-normalised where the floors are "
                         "recorded) minus generative mean retention, with a 95% bootstrap interval (the two "
                         "groups' items resampled independently).")
            page.table(f"gap_{name}", pd.DataFrame({
                "model": gap["model"],
                "classification - generative": [format_interval(d, lo, hi) for d, lo, hi in
                                                 zip(gap.iloc[:, 1], gap["ci_low"], gap["ci_high"])]}))
        _shares(page, shares[target], target)
        _degeneration(page, table, tasks, target)
        _code_errors(page, table, tasks, target, out)
        _samples(page, combined, f"Samples: {target} and its recoveries",
                 "Each generative item: the base model's output and each model's, what was scored from it, the "
                 "outcome and the error class; items the base model solved and a model lost are marked.")
        methods += _method_rows(target, rows, table, against, references, budgets, names, stats["alpha"], spread)
    _methods(page, pd.DataFrame(methods), out)
    method, alpha = stats["adjust"], stats["alpha"]
    endpoint = StatsSpec(primary=stats.get("primary", "generative")).primary_row(tasks)[1] if groups else ""
    found = [paper.sgr_over_reference(head_to_heads, alpha, method, endpoint),
             paper.recovery_share(shares, alpha, method)]
    best = paper.best_method(leads, alpha, method, stats["equivalence_margin"])
    return found + ([best] if best else [])


def _shares(page: Page, shares: pd.DataFrame, target: str) -> None:
    """What recovery wins back: per model and task group, (recovered - pruned) / (base - pruned)."""
    if shares.empty:
        return
    name = target.replace("@", "_")
    page.section(f"How much of the loss recovery wins back ({target})",
                 "Per recovered model and task group: (recovered - pruned) / (base - pruned), the mean over the "
                 "group's tasks where the pruned model lost something (95% paired bootstrap interval), and "
                 "classification's share minus generation's (bootstrap p).")
    frame = pd.DataFrame({"model": shares["model"]})
    for group in ("classification", "generative"):
        col = f"{group}_share"
        frame[f"{group} share"] = [format_interval(v, lo, hi) or "not measured" for v, lo, hi in
                                   zip(shares[col], shares[f"{col}:ci_low"], shares[f"{col}:ci_high"])]
    frame["classification - generative"] = [format_interval(v, lo, hi) or "not measured" for v, lo, hi in
                                            zip(shares["difference"], shares["ci_low"], shares["ci_high"])]
    frame["p"] = shares["p_value"].map(lambda p: "" if pd.isna(p) else f"{p:.3f}")
    page.table(f"shares_{name}", frame)


def _method_rows(target: str, rows: list, table: pd.DataFrame, against: pd.DataFrame, references: list[str],
                 budgets: dict, names: dict[str, str], alpha: float = 0.05, spread: pd.DataFrame | None = None
                 ) -> list[dict]:
    """One row per model of a target's recovery: its retention per group, the paired differences, its budget;
    for a method trained with several seeds (`spread`, seeds.csv), the mean over seeds, the spread between them
    and the interval over seeds and items."""
    shorts = {references[0]: "pruned", **({references[1]: "SFT sgr"} if len(references) > 1 else {})}
    out = []
    for label, _, arm in rows:
        row = {"target": target, "ratio": float(target.rsplit("@", 1)[1]),
               "method": "pruned" if arm is None else names[arm]}
        for group in ("classification", "generative"):
            col = f"{group}_mean"
            if col in table:
                row[f"{group} retention"] = format_interval(table.loc[label, col], table.loc[label, f"{col}:ci_low"],
                                                            table.loc[label, f"{col}:ci_high"])
                row[f"_{group}"] = table.loc[label, col]
                row[f"_{group}_low"], row[f"_{group}_high"] = (table.loc[label, f"{col}:ci_low"],
                                                              table.loc[label, f"{col}:ci_high"])
                row[f"_{group}_items"] = table.loc[label, f"{col}:items"] if f"{col}:items" in table else None
            for reference, short in shorts.items():
                hit = against[(against.model == label) & (against.against == reference)
                              & (against.task == f"{group} mean")]
                if not hit.empty:
                    h = hit.iloc[0]
                    p_adj = getattr(h, "p_adj", h.p_value)
                    row[f"{group} vs {short}"] = (format_interval(h.difference, h.ci_low, h.ci_high)
                                                  + (" *" if p_adj < alpha else "")
                                                  + f" (p {h.p_value:.3f}, adjusted {p_adj:.3f})")
        if spread is not None and not spread.empty and label in set(spread["model"]):
            s = spread[spread["model"] == label].iloc[0]
            row["seeds"] = "; ".join(
                f"{g} {s[f'{g}_min']:.3f}-{s[f'{g}_max']:.3f}, over seeds and items "
                f"{format_interval(s[f'{g}_mean'], s[f'{g}_mean:ci_low'], s[f'{g}_mean:ci_high'])}"
                for g in ("classification", "generative") if f"{g}_min" in s and pd.notna(s[f"{g}_min"]))
            row["seeds"] = f"{s['seeds']}: {row['seeds']}"
        budget = budgets.get((target, arm), {})
        row |= {"steps": budget.get("steps", ""), "tokens": budget.get("tokens", ""),
                "trainable parameters": budget.get("trainable_parameters", ""), "seconds": budget.get("seconds", "")}
        out.append(row)
    return out


def _methods(page: Page, frame: pd.DataFrame, out: Path) -> None:
    if frame.empty:
        return
    if "seeds" in frame:  # only methods trained with several seeds have a spread
        frame = frame.assign(seeds=frame["seeds"].fillna("one run"))
    page.section("Which healing gets generation back: every method at every ratio",
                 "Each model's mean retention per task group (95% paired bootstrap interval), and its difference "
                 "from the pruned model it started from and from SFT on SGR, on the same items (95% paired "
                 "bootstrap interval; * p < alpha in a paired sign-flip test after adjustment within the target's "
                 "methods and references, one family per task row, else the difference is not significant). Budget: optimizer steps, input tokens trained on, trainable parameters, and the "
                 "stage's seconds (training and merge, or the linear fit). A method trained with several seeds "
                 "(recover.seeds) is the mean over its runs, item by item; its seeds column gives the runs' "
                 "retentions and an interval over seeds and items.")
    page.table("recovery_methods", frame[[c for c in frame.columns if not c.startswith("_")]])
    plt = _figure()
    groups = [g for g in ("classification", "generative") if f"_{g}" in frame]
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.8), squeeze=False)
    ratios = sorted(frame["ratio"].unique())
    offsets = dodge(frame["method"].nunique(), 0.012 * (ratios[-1] - ratios[0]))
    for ax, group in zip(axes[0], groups):
        for offset, (method, g) in zip(offsets, frame.groupby("method", sort=False)):
            g = g.sort_values("ratio")
            err = [(g[f"_{group}"] - g[f"_{group}_low"]).clip(lower=0),
                   (g[f"_{group}_high"] - g[f"_{group}"]).clip(lower=0)]
            ax.errorbar(g["ratio"] + offset, g[f"_{group}"], yerr=err, marker="o", capsize=3, label=method)
        ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
        ax.axhline(1.0, linestyle="--", color="gray")
        ax.set_xlabel("fraction of layers removed")
        ax.set_ylabel(f"{group} retention")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    path = out / "figures" / "recovery_methods.png"
    _save(fig, plt, path)
    page.figure(path, "Retention against the pruning ratio, one line per recovery method (95% intervals)",
                interactive=plotly.methods(frame))


def _difference_table(frame: pd.DataFrame) -> pd.DataFrame:
    """head_to_head.csv of SGR against the original answers as printed: retentions to 3 places, the difference
    with its interval and a star."""
    a, b, diff = frame.columns[1:4]
    return pd.DataFrame({
        "task": frame["task"], "SGR": frame[a].map("{:.3f}".format),
        "original answers": frame[b].map("{:.3f}".format),
        "SGR - original answers": [format_interval(d, lo, hi) + (" *" if p < 0.05 else "") for d, lo, hi, p in
                                   zip(frame[diff], frame["ci_low"], frame["ci_high"], frame["p_value"])],
        "p": frame["p_value"].map("{:.3f}".format), "items": frame["items"]})


def _samples(page: Page, source: Path, heading: str, text: str, names: dict[str, str] | None = None) -> None:
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


def _degeneration(page: Page, table: pd.DataFrame, tasks: dict, target: str) -> None:
    rows = []
    for task, desc in tasks.items():
        if desc["kind"] != "generative" or "base" not in table.index:
            continue
        for model in table.index:
            row = {"model": model, "task": desc["label"]}
            for m in DEGENERATION:
                col = f"{task}:{m}"
                if col in table:
                    row[m] = table.loc[model, col]
                    row[f"{m} delta"] = table.loc[model, col] - table.loc["base", col]
            rows.append(row)
    if rows:
        page.table(f"degeneration_{target.replace('@', '_')}", pd.DataFrame(rows))


def _code_errors(page: Page, table: pd.DataFrame, tasks: dict, target: str, out: Path) -> None:
    rows = []
    for task, desc in tasks.items():
        if f"{task}:err_bracket" not in table:
            continue
        for model in table.index:
            row = {"model": model, "task": desc["label"]}
            for group, metrics in ERROR_GROUPS.items():
                row[group] = sum(table.loc[model, f"{task}:{m}"] for m in metrics if f"{task}:{m}" in table)
            rows.append(row)
    if not rows:
        return
    frame = pd.DataFrame(rows)
    page.table(f"code_errors_{target.replace('@', '_')}", frame)
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(frame)))
    left = [0.0] * len(frame)
    labels = [f"{r.model} ({r.task})" for r in frame.itertuples()]
    for group in ERROR_GROUPS:
        ax.barh(labels, frame[group], left=left, label=group)
        left = [a + b for a, b in zip(left, frame[group])]
    ax.set_xlabel("fraction of samples")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    path = out / "figures" / f"code_errors_{target.replace('@', '_')}.png"
    _save(fig, plt, path)
    page.figure(path, f"Code error taxonomy ({target})",
                interactive=plotly.stacked_bars(frame.assign(label=labels), "label", list(ERROR_GROUPS),
                                                f"Code error taxonomy ({target})", "fraction of samples"))


def _sweep(page: Page, sweep: SweepArtifact, out: Path, alpha: float) -> None:
    table = sweep.retention()
    tasks = sweep.tasks()
    page.section("Figure 1: layer sensitivity",
                 "Retention of each task with one layer removed (the single-layer sweep); * p < alpha after Holm's "
                 "adjustment over the task's layers (one family per task).")
    compared = [t for t in tasks if t in table]
    legend = {t: f"{tasks[t]['label']} ({tasks[t]['primary_metric']})" for t in compared}
    page.figure(sweep.layer_plot(), "Retention against the removed layer", "figure1_layers.png",
                plotly.layer_sensitivity(table, compared, legend))
    layers = single_layer_rows(table)
    cols = _retention_columns(table.loc[layers], tasks, alpha)
    page.table("figure1_layers", cols.reset_index(names="removed layer"))
    _noise(page, sweep.meta(), tasks)
    _samples(page, sweep.root, "Samples: the single-layer sweep",
             "Each generative item of the sweep: the base model's output and the output with each layer removed, what "
             "was scored from it, the outcome and the error class; items the base model solved and a model lost are "
             "marked.")
    if "arithmetic:acc" in table and "arithmetic:logprob" in table:
        page.section("The arithmetic probe per layer",
                     "Accuracy (argmax over the ten digits) and the target digit's log-probability with each layer "
                     "removed; the dashed line is the base model.")
        probe = pd.DataFrame({"removed layer": [int(c.split("-")[1]) for c in layers],
                              "accuracy": table.loc[layers, "arithmetic:acc"].to_numpy(),
                              "target log-prob": table.loc[layers, "arithmetic:logprob"].to_numpy()})
        page.table("arithmetic_probe", probe)
        plt = _figure()
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for ax, col, metric in zip(axes, ("accuracy", "target log-prob"), ("acc", "logprob")):
            ax.plot(probe["removed layer"], probe[col], marker="o")
            ax.axhline(table.loc["base", f"arithmetic:{metric}"], linestyle="--", color="gray")
            ax.set_xlabel("removed layer")
            ax.set_ylabel(col)
            ax.grid(alpha=0.3)
        path = out / "figures" / "arithmetic_probe.png"
        _save(fig, plt, path)
        page.figure(path, "The arithmetic probe per removed layer",
                    interactive=plotly.probe(probe, {"accuracy": table.loc["base", "arithmetic:acc"],
                                                     "target log-prob": table.loc["base", "arithmetic:logprob"]}))


def _training(page: Page, recover_dirs: list[tuple[str, Path]], out: Path) -> None:
    from prunelab.report import combine_training_curves

    if not recover_dirs:
        return
    page.section("Training perplexity", "Perplexity per optimizer step of each recovery run.")
    # each run's curve is read through RecoverArtifact: a missing one names its file
    paths = combine_training_curves([d for _, d in recover_dirs], out / "training",
                                    [label for label, _ in recover_dirs])
    curves = pd.read_csv(paths["training_csv"])
    page.figure(paths["training_plot"], "Training perplexity per step",
                interactive=plotly.lines({run: g for run, g in curves.groupby("run", sort=False)}, "step",
                                         "perplexity", "Training perplexity per step", "optimizer step",
                                         "training perplexity", log_y=True))


def _gain(row, what: str) -> str:
    """A measured speed-up with its interval over rounds, marked where the interval covers 1 (no measured gain)."""
    low, high = row.get(f"{what}_speedup:ci_low", float("nan")), row.get(f"{what}_speedup:ci_high", float("nan"))
    text = format_interval(row[f"{what}_speedup"], low, high) if pd.notna(low) else f"{row[f'{what}_speedup']:.3f}"
    return text + (" (covers 1)" if pd.notna(low) and low <= 1 <= high else "")


def _time_to_answer(page: Page, cost: pd.DataFrame, compare: CompareArtifact) -> None:
    """Seconds to a correct answer: compare's tokens per solved item at each model's measured decode rate."""
    from prunelab.report.answers import time_to_answer

    path = compare.root / "answers.csv"
    if not path.exists():
        return
    names = {"base": "base"} | {k: Candidate(tuple(v.removed)).name for k, v in compare.selections().items()}
    table = time_to_answer(pd.read_csv(path), cost["decode_b1_tps"].to_dict(), names)
    if table.empty:
        return
    page.section("Time to a correct answer",
                 "Every token each model generated per item it solved (compare-strategies, reasoning included), at "
                 "its measured batch-1 decode rate: a pruned model that decodes faster but needs more tokens per "
                 "solved item can be slower to a correct answer ('survives': the decode speed-up is still a speed-up "
                 "in time to a correct answer).")
    page.table("time_to_answer", table)


def _cost(page: Page, cost_artifact: CostArtifact, compare: CompareArtifact, out: Path) -> None:
    """Retention against measured decode speed-up and memory, one point per strategy x ratio; the base model's
    point at speed-up 1, nothing saved, retention 1."""
    cost = cost_artifact.cost().set_index("model")
    strategies = compare.strategies()
    groups = [g for g in ("classification_mean", "generative_mean") if g in strategies]
    rows = [{"model": "base", "removed": "", "decode speed-up b1": 1.0, "decode bound b1": 1.0,
             "decode speed-up batched": 1.0, "memory saved": 0.0, "classification mean": "1.000",
             "generative mean": "1.000"}]
    points = [{"model": "base", "speedup": 1.0, "memory_saved": 0.0}
              | {f"{g}{suffix}": 1.0 for g in groups for suffix in ("", ":ci_low", ":ci_high")}]
    for _, r in strategies.iterrows():
        key = f"{r['strategy']}@{r['ratio']:g}"
        if key not in cost.index:
            continue
        c = cost.loc[key]
        one = strategies[(strategies.strategy == r["strategy"]) & (strategies.ratio == r["ratio"])]
        cls, gen = (with_interval(one, g)[0] if g in one else "" for g in ("classification_mean", "generative_mean"))
        rows.append({"model": key, "removed": r["removed"], "decode speed-up b1": _gain(c, "decode_b1"),
                     "decode bound b1": c["decode_b1_bound"], "decode speed-up batched": _gain(c, "decode_batch"),
                     "memory saved": c["memory_saved"], "classification mean": cls, "generative mean": gen})
        points.append({"model": key, "speedup": c["decode_b1_speedup"], "memory_saved": c["memory_saved"],
                       # the speed-up's own interval over rounds, where it has one
                       "speedup:ci_low": c.get("decode_b1_speedup:ci_low", float("nan")),
                       "speedup:ci_high": c.get("decode_b1_speedup:ci_high", float("nan"))}
                      | {f"{g}{suffix}": r.get(f"{g}{suffix}", float("nan")) for g in groups
                         for suffix in ("", ":ci_low", ":ci_high", ":items")})
    if len(rows) == 1:
        return
    page.section("What a cut buys: retention against measured speed-up and memory",
                 "Decode speed-up (batch 1 and batched) and peak memory saved, measured on the same workload "
                 "(prunelab cost), beside the bound the architecture allows; the retention of the same removed layers. "
                 "A speed-up is the geometric mean over rounds (the models taking turns, each in a fresh process) of "
                 "its rate over the base model's, with a 95% interval over rounds; '(covers 1)': no measured gain.")
    page.table("cost_retention", pd.DataFrame(rows))
    page.table("cost", cost.reset_index())
    _time_to_answer(page, cost, compare)
    points = pd.DataFrame(points).reindex(columns=["model", "speedup", "speedup:ci_low", "speedup:ci_high",
                                                   "memory_saved", *[f"{g}{suffix}" for g in groups for suffix in
                                                                     ("", ":ci_low", ":ci_high", ":items")]])
    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, x, xlabel in ((axes[0], "speedup", "decode speed-up (batch 1)"), (axes[1], "memory_saved",
                                                                              "peak memory saved")):
        for group, marker in zip(groups, ("o", "^")):
            error = [(points[group] - points[f"{group}:ci_low"]).clip(lower=0).fillna(0),
                     (points[f"{group}:ci_high"] - points[group]).clip(lower=0).fillna(0)]
            xerr = None if x != "speedup" else [(points[x] - points[f"{x}:ci_low"]).clip(lower=0).fillna(0),
                                                (points[f"{x}:ci_high"] - points[x]).clip(lower=0).fillna(0)]
            ax.errorbar(points[x], points[group], yerr=error, xerr=xerr, fmt=marker, capsize=3,
                        label=group.split("_")[0])
        for p in points.itertuples(index=False):
            ax.annotate(p.model, (getattr(p, x), getattr(p, groups[0]) if groups else 1.0), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean retention")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    path = out / "figures" / "cost_retention.png"
    _save(fig, plt, path)
    page.figure(path, "Retention against decode speed-up and memory saved (base at speed-up 1, nothing saved)",
                interactive=plotly.cost(points))


def _flipped_examples(page: Page, compare: CompareArtifact, per_candidate: int = 2) -> None:
    """For each candidate, a few items the base model solved and it failed, with both outputs."""
    from prunelab.errors import ResultsError
    from prunelab.report.samples import samples

    try:
        flipped = samples(compare.root, flipped=True)
    except ResultsError:
        return  # no generative task, or a run made before samples were kept
    if flipped.empty:
        return
    names = {Candidate(tuple(v.removed)).name: k for k, v in compare.selections().items()}
    page.section("Where it breaks: items the base model solved and the pruned model lost",
                 "The first items of each pruned model whose primary metric fell below the base model's, with both "
                 "outputs and what was scored from them.")
    for candidate, group in flipped.groupby("candidate", sort=True):
        for r in group.head(per_candidate).itertuples(index=False):
            label = names.get(candidate, candidate)
            error = _text(getattr(r, "error_class", None))  # NaN where the task has no error classes
            blocks = [(f"{label}: {r.outcome}" + (f", {error}" if error else ""),
                       _text(r.output)), (f"base: {r.base_outcome}", _text(r.base_output))]
            page.example(f"{r.task} {r.item_id}: {label} ({candidate})", blocks)


def _text(value, width: int = 1200) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    return text if len(text) <= width else text[:width] + " ..."


def write_pipeline_report(root: str | Path) -> dict[str, Path]:
    """report.md and report.html under ROOT/report, from ROOT/pipeline.json and the stage directories it names; a
    file a section needs from a stage this run finished is an `ArtifactMissing` naming it."""
    pipeline = PipelineArtifact(root)
    summary = pipeline.summary_data()
    stages = {s.name: s.dir for s in pipeline.stages()}
    config = summary["config"]
    out = pipeline.root / "report"
    page = Page(out, f"{config['name']}: depth pruning of {config['model']['name']}")
    host = summary.get("host")
    machine = (f" Driver machine: {host['cpus']} CPUs, {', '.join(host['gpus']) or 'no GPU'}, "
               f"{'native' if host['cpu_native_bf16'] else 'no native'} bf16 on the CPU, so `dtype: auto` is "
               f"{host['dtype_auto']} there." if host else "")
    page.section("Stages", "Each stage's key (inputs hashed), whether this run computed or reused it, and what it "
                 "cost when it was computed: seconds over every run that worked on it, a stopped run counted to its "
                 "last write." + machine)
    page.table("stages", pd.DataFrame([{"stage": s["name"], "status": s["status"], "key": s["key"][:12],
                                        "seconds": s.get("seconds", "")} for s in summary["stages"]]))
    sweep = SweepArtifact(stages[SWEEP_STAGE]) if SWEEP_STAGE in stages else None
    stats = {"adjust": "holm", "alpha": 0.05, "equivalence_margin": 0.05, **(config.get("stats") or {})}
    method, alpha = stats["adjust"], stats["alpha"]
    found = [paper.layer_sensitivity(sweep.retention(), sweep.tasks(), _layer_groups(sweep), alpha, method)
             if sweep else paper.layer_sensitivity(None, {})]
    if COMPARE_STAGE in stages:
        compare = CompareArtifact(stages[COMPARE_STAGE])
        found.append(paper.classification_over_generative(compare.strategies(), _strategy_gaps(compare), alpha,
                                                          method))
        _strategies(page, compare, alpha)
        if COST_STAGE in stages:
            _cost(page, CostArtifact(stages[COST_STAGE]), compare, out)
        _flipped_examples(page, compare)
        _samples(page, compare.root, "Samples: the pruned models",
                 "Each generative item: the base model's output and each strategy's pruned model's, what was scored "
                 "from it, the outcome and the error class; items the base model solved and a model lost are marked.",
                 {Candidate(tuple(v.removed)).name: k for k, v in compare.selections().items()})
    from prunelab.recovery.registry import trained as trained_by

    groups, budgets, trained, seed_runs = {}, {}, [], {}
    recover = config.get("recover") or {}
    section = PipelineRecover.model_validate(recover) if recover else None
    arms = recovery_arms(section) if recover else []
    seconds = {s["name"]: s.get("seconds", "") for s in summary["stages"]}
    names = {arm: arm_label(arm, recover) for arm, _, _ in arms}
    for target in recover.get("targets", []):
        rows = [(f"pruned {target}", stages.get(eval_stage(target)), None)]
        rows += [(f"+ {names[arm]} ({target})", stages.get(eval_stage(target, arm)), arm) for arm, _, _ in arms]
        runs = _seed_runs(section, target, names, stages) if recover else ([], {})
        if all(d is not None for _, d, _ in rows + runs[0]):
            groups[target], seed_runs[target] = rows, runs
        for arm, method, _ in arms:
            stage = recover_stage(target, arm)
            if stage in stages:
                budgets[(target, arm)] = {**RecoverArtifact(stages[stage]).meta().get("training", {}),
                                          "seconds": seconds.get(stage, "")}
                if trained_by(method, section) is not None:  # a method that only transforms has no curve
                    trained.append((f"{target}-{arm}", stages[stage]))
    found += _recovery(page, groups, out, budgets, names, stats, seed_runs)
    page.findings = found
    if SWEEP_STAGE in stages:
        _sweep(page, SweepArtifact(stages[SWEEP_STAGE]), out, alpha)
    _training(page, trained, out)
    return {"markdown": write_text(out / "report.md", page.markdown()),
            "html": write_text(out / "report.html", page.html())}


__all__ = ["write_pipeline_report"]
