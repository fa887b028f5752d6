"""The samples behind the scores, on the report page: per generative item, the base model's output and each
model's, side by side, with what was scored from each (the extracted answer, the assembled program), the outcome
and the error class; items the base model solved and a model lost are marked. Filters (model, outcome, error
class, lost items only) run in the page itself, offline.

    fragment(samples(run_dir), "block_influence@0.25")   # an HTML block for the page
"""

import html

import pandas as pd

from prunelab.report.samples import clip

WIDTH = 2000  # characters of an output shown; the store keeps all of it


def _text(value) -> str:
    return clip(value, WIDTH)


def _score(value) -> str:
    return "" if value is None or pd.isna(value) else f"{value:g}"


def _panel(label: str, score, outcome, error, output, scored) -> str:
    outcome, error = _text(outcome), _text(error)
    head = f"{label}: {_score(score)} ({outcome}{', ' + error if error else ''})"
    scored_text = _text(scored)
    extra = (f"<div class=scored>scored: <pre>{html.escape(scored_text)}</pre></div>"
             if scored_text and scored_text != _text(output) else "")
    return (f'<div class=panel data-model="{html.escape(label)}" data-outcome="{html.escape(outcome)}" '
            f'data-error="{html.escape(error)}"><b>{html.escape(head)}</b><pre class=output>'
            f"{html.escape(_text(output))}</pre>{extra}</div>")


def fragment(table: pd.DataFrame, name: str) -> str:
    """The samples of one set of models (`samples()`'s rows: one per model and item, the base model's as base_*)."""
    if table.empty:
        return ""
    models = list(dict.fromkeys(table["candidate"]))
    outcomes = sorted({str(o) for o in table["outcome"].dropna()} | {str(o) for o in table["base_outcome"].dropna()})
    errors = sorted({str(e) for e in table.get("error_class", pd.Series(dtype=str)).dropna() if str(e)})
    items = []
    for (task, item), group in table.groupby(["task", "item_id"], sort=True):
        first = group.iloc[0]
        lost = [r.candidate for r in group.itertuples() if pd.notna(r.base_score) and pd.notna(r.score)
                and r.base_score > r.score]
        panels = [_panel("base", first.base_score, first.get("base_outcome"), first.get("base_error_class"),
                         first.get("base_output"), first.get("base_scored"))]
        panels += [_panel(r["candidate"], r["score"], r.get("outcome"), r.get("error_class"), r.get("output"),
                          r.get("scored")) for _, r in group.iterrows()]
        summary = " · ".join([f"base {_score(first.base_score)}"]
                             + [f"{r.candidate} {_score(r.score)}" for r in group.itertuples()])
        gold = f"<div class=gold>gold: <pre>{html.escape(_text(first.get('gold')))}</pre></div>" \
            if _text(first.get("gold")) else ""
        items.append(f'<details class="item{" lost" if lost else ""}" data-lost="{int(bool(lost))}">'
                     f"<summary>{html.escape(f'{task} {item}')}{' (lost by ' + html.escape(', '.join(lost)) + ')' if lost else ''}"
                     f" <small>{html.escape(summary)}</small></summary>{gold}<div class=pair>{''.join(panels)}</div>"
                     "</details>")

    def select(kind: str, values: list[str]) -> str:
        options = "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in values)
        return f'<label>{kind} <select data-filter="{kind}"><option value="">any</option>{options}</select></label>'

    filters = (select("model", ["base", *models]) + select("outcome", outcomes) + select("error", errors)
               + '<label><input type=checkbox data-filter="lost"> only items the base model solved and a model '
               "lost</label>")
    return (f'<div class=samples data-samples="{html.escape(name)}" data-items="{len(items)}">'
            f"<div class=filters>{filters} <span class=shown></span></div>{''.join(items)}</div>")


# each samples block filters its items: an item shows if it is lost (when asked) and one of its panels matches the
# chosen model, outcome and error class
SCRIPT = """<script>
document.querySelectorAll('.samples').forEach((block) => {
  const controls = [...block.querySelectorAll('[data-filter]')];
  const apply = () => {
    const want = Object.fromEntries(controls.map((c) => [c.dataset.filter, c.type === 'checkbox' ? c.checked : c.value]));
    let shown = 0;
    block.querySelectorAll('details.item').forEach((item) => {
      const match = [...item.querySelectorAll('.panel')].some((p) => (!want.model || p.dataset.model === want.model)
        && (!want.outcome || p.dataset.outcome === want.outcome) && (!want.error || p.dataset.error === want.error));
      const visible = match && (!want.lost || item.dataset.lost === '1');
      item.style.display = visible ? '' : 'none';
      shown += visible;
    });
    block.querySelector('.shown').textContent = shown + ' of ' + block.dataset.items + ' items';
  };
  controls.forEach((c) => c.addEventListener('change', apply));
  apply();
});
</script>"""

STYLE = (".samples .filters{position:sticky;top:0;background:#fff;padding:.3em 0;font-size:13px}.samples label"
         "{margin-right:1em}details.item{border-top:1px solid #eee;padding:.2em 0}details.item.lost>summary{color:#b50}"
         "details.item small{color:#777}.panel{flex:1;min-width:0;font-size:12px}.panel pre{max-height:24em;"
         "overflow:auto}")

