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

Each part is declared by the stage whose results it shows (`ReportSection` in `prunelab.stages.registry`; the
sections are `prunelab.report.pruning_sections` and `recovery_sections`), and finds its stages by kind and by the
role the planner gave each (pipeline.json): a new stage brings its own part of the page. Every table on the page is a CSV under `report/tables/`, printed cell for cell as the CSV holds it, so the page and
the files cannot disagree (a browser test checks it).
"""

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prunelab.artifacts import PIPELINE_SUMMARY, ArtifactMissing, PipelineArtifact, StageRecord
from prunelab.atomic import write_text
from prunelab.report import display, samples_view
from prunelab.report import findings as paper
from prunelab.report import interactive as plotly

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


@dataclass(frozen=True)
class PipelineRun:
    """What a report section reads: the run's finished stages (each with its role), the statistics settings and
    the report's directory."""

    stages: tuple[StageRecord, ...]
    stats: dict
    out: Path

    @property
    def alpha(self) -> float:
        return self.stats["alpha"]

    @property
    def adjust(self) -> str:
        return self.stats["adjust"]

    def of_kind(self, kind: str) -> list[StageRecord]:
        return [s for s in self.stages if s.kind == kind]

    def first(self, kind: str) -> StageRecord | None:
        return next(iter(self.of_kind(kind)), None)


def _stages(pipeline: PipelineArtifact) -> tuple[StageRecord, ...]:
    stages = tuple(pipeline.stages())
    unknown = [s.name for s in stages if s.role is None]
    if unknown:
        raise ArtifactMissing(f"{str(pipeline.root / PIPELINE_SUMMARY)!r} does not record what its stages are (no "
                              f"role for {', '.join(unknown[:3])}{', ...' if len(unknown) > 3 else ''}): it was "
                              "written by an older prunelab; run `prunelab pipeline` on its config again (every "
                              "finished stage is reused) and the report is rendered from the new pipeline.json")
    return stages


def write_pipeline_report(root: str | Path) -> dict[str, Path]:
    """report.md and report.html under ROOT/report, from ROOT/pipeline.json and the stage directories it names: each
    registered stage's sections in their places, the findings they check in the paper's order. A file a section
    needs from a stage this run finished is an `ArtifactMissing` naming it."""
    from prunelab.stages.registry import STAGES

    pipeline = PipelineArtifact(root)
    summary = pipeline.summary_data()
    config = summary["config"]
    out = pipeline.root / "report"
    run = PipelineRun(_stages(pipeline), {"adjust": "holm", "alpha": 0.05, "equivalence_margin": 0.05,
                                          **(config.get("stats") or {})}, out)
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
    found = []
    for section in sorted((s for entry in STAGES for s in entry.report), key=lambda s: s.at):
        found += section(page, run)
    page.findings = paper.in_paper_order(found)
    return {"markdown": write_text(out / "report.md", page.markdown()),
            "html": write_text(out / "report.html", page.html())}


__all__ = ["Page", "PipelineRun", "write_pipeline_report"]
