"""Reports of finished (or partly finished) artifact directories, from the results store and meta.json alone:

    write_report("runs/qwen-sweep")     # retention.csv/.md (+ layer_sensitivity.png, + strategies.* for compare)
    combine_evals(["runs/e-pruned", "runs/e-sgr"], "runs/cmp", labels=["pruned", "+SFT SGR"])   # one table

`prunelab report DIR` calls it, so any artifact directory can be re-rendered anywhere, with the same result.
"""

from pathlib import Path

from prunelab.artifacts import SELECTIONS, SOURCES, CompareArtifact, RecoverArtifact
from prunelab.atomic import write_json


def write_report(root: str | Path) -> dict[str, Path]:
    from prunelab.metadata import read_meta
    from prunelab.report.tables import retention_report, strategies_report
    from prunelab.results import ResultsStore

    root = Path(root)
    meta = read_meta(root)
    config = meta["config"]
    title = {"sweep": f"Layer sensitivity: {config['name']} ({config['model']['name']})",
             "eval": f"{config['name']} ({config['model']['name']})",
             "compare-strategies": f"Strategies: {config['name']} ({config['model']['name']})"}.get(
        meta["stage"], config.get("name", root.name))
    stats = config.get("stats") or {}
    results = ResultsStore(root).read()
    paths = retention_report(root, results, meta["tasks"], title, stats=stats, noise=_noise_note(meta))
    paths |= answers_report(root, results, meta["tasks"], title)
    _warn_untestable(results, meta["tasks"], stats.get("alpha", 0.05))
    compare = CompareArtifact(root)
    if meta["stage"] == compare.stage and "csv" in paths and compare.has(SELECTIONS):
        chosen = compare.selections()
        keys = [f"{s}@{r:g}" for s in config["strategies"] for r in config["ratios"]]
        paths |= strategies_report(root, compare.retention(), meta["tasks"],
                                   {k: chosen[k] for k in keys if k in chosen}, config["name"],
                                   stats.get("adjust", "holm"))
    return paths


def answers_report(root: Path, results, tasks: dict, title: str) -> dict[str, Path]:
    """answers.csv / .md (tokens to an answer, every generative task) and, for sampled tasks, scaling.csv,
    scaling_gain.csv and scaling.png (`report.answers`)."""
    from prunelab.atomic import write_text
    from prunelab.report import plots
    from prunelab.report.answers import answer_tokens, scaling

    tokens = answer_tokens(results, tasks)
    if tokens.empty:
        return {}
    paths = {"answers": root / "answers.csv"}
    write_text(paths["answers"], tokens.to_csv(index=False, float_format="%.4f"))
    text = (f"# Tokens to an answer: {title}\n\nTokens generated per item (reasoning and answer apart where the "
            "model reasons), the share of items that hit a budget, and every token spent per item solved.\n\n"
            + _none_solved(tokens).to_markdown(index=False, floatfmt=".3f") + "\n")
    curve, gain = scaling(results, tasks)
    if not curve.empty:
        paths |= {"scaling": root / "scaling.csv", "scaling_gain": root / "scaling_gain.csv",
                  "scaling_plot": root / "scaling.png"}
        write_text(paths["scaling"], curve.to_csv(index=False, float_format="%.4f"))
        write_text(paths["scaling_gain"], gain.to_csv(index=False, float_format="%.4f"))
        plots.scaling(curve, paths["scaling_plot"], title)
        text += ("\n## Sampling more\n\nEach candidate's gain from its first sample to all of them, against the "
                 "base model's gain on the same items (paired; 95% bootstrap intervals; a negative difference: "
                 "pruning took away part of what sampling more buys).\n\n"
                 + (gain.to_markdown(index=False, floatfmt=".3f") if not gain.empty else "(no base model)") + "\n")
    paths["answers_markdown"] = root / "answers.md"
    write_text(paths["answers_markdown"], text)
    return paths


def _none_solved(tokens):
    """Tokens per solved item where nothing was solved: said in words, not as nan."""
    shown = tokens.copy()
    shown["tokens_per_solved"] = [f"{v:.3f}" if v == v else "none solved" for v in shown["tokens_per_solved"]]
    return shown


def _noise_note(meta: dict) -> str | None:
    """The noise floor's paragraph for a stage with generative tasks (`execution.noise.describe`)."""
    from prunelab.execution.noise import describe

    tasks = meta.get("tasks") or {}
    if not any(desc.get("kind") == "generative" for desc in tasks.values()):
        return None
    return describe(meta.get("noise_floor"), {t: d["label"] for t, d in tasks.items()})


def _warn_untestable(results, tasks: dict, alpha: float) -> None:
    """`report.power.warn_untestable` for the tasks of a finished (or stopped) stage: its candidates other than
    the base model are the family."""
    from prunelab.report.power import warn_untestable
    from prunelab.report.retention import primary_values

    per_task = primary_values(results, tasks)
    candidates = {c for values in per_task.values() for c in values.columns if c != "base"}
    base = {task: values["base"].dropna().to_numpy() for task, values in per_task.items() if "base" in values}
    if base:
        warn_untestable(base, max(1, len(candidates)), alpha)


def combine_evals(roots: list[str | Path], out: str | Path, labels: list[str] | None = None,
                  title: str = "Retention", versus: tuple[str, str] | None = None,
                  references: list[str] = (), stats: dict | None = None,
                  seeds: dict[str, list[tuple[str, int]]] | None = None) -> dict[str, Path]:
    """One retention table (the paper's Tables 2-3: pruned, + SFT on external data, + SFT on SGR) from several
    `prunelab eval` directories of the same tasks and base model: each directory's model is a row, with intervals
    and paired tests against the base model on the items both have. Beside it, `gap.csv`: each model's
    classification minus generative retention with its interval; with `versus=(a, b)` (two labels),
    `head_to_head.csv`: a against b on the same items (`prunelab.report.retention.head_to_head`); with
    `references` (labels, the pruned model first), `against.csv`: every other model against each of them
    (`retention.against`), `shares.csv`: the share of the pruned model's loss each other model wins back per task
    group (`retention.recovery_shares`), and `lead.csv`: the two models with the highest generative retention,
    one against the other. `stats`: the config's stats section (adjustment, equivalence margin). `seeds`: a
    method trained with several seeds, label -> [(the label of each run, its seed)] (the first run's label being
    the method's): the method's rows become the mean over its runs, item by item, each run kept as `label seed S`,
    and `seeds.csv` gives each method's spread over seeds and its interval over seeds and items."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from prunelab.atomic import write_text
    from prunelab.errors import ResultsError
    from prunelab.metadata import read_meta
    from prunelab.report.retention import against, group_gap, head_to_head, recovery_shares
    from prunelab.report.tables import retention_report
    from prunelab.results import ResultsStore

    roots = [Path(r) for r in roots]
    labels = labels or [read_meta(r)["config"]["name"] for r in roots]
    if len(labels) != len(roots) or len(set(labels)) != len(labels):
        raise ResultsError(f"labels {labels}: give one distinct label per directory ({len(roots)})")
    metas = [read_meta(r) for r in roots]
    for root, meta in zip(roots, metas):
        if meta["stage"] != "eval" or not meta["config"].get("base_model"):
            raise ResultsError(f"{str(root)!r} is not a `prunelab eval` directory with a base_model")
        if meta["config"]["base_model"] != metas[0]["config"]["base_model"]:
            raise ResultsError(f"{str(root)!r} has another base model ({meta['config']['base_model']['name']}) "
                               f"than {str(roots[0])!r} ({metas[0]['config']['base_model']['name']})")
    tables = []
    for i, (root, label) in enumerate(zip(roots, labels)):
        table = ResultsStore(root).read()
        keep = pc.equal(table["candidate"], "model")
        if i == 0:
            keep = pc.or_(keep, pc.equal(table["candidate"], "base"))
        table = table.filter(keep)
        names = [label if c == "model" else c for c in table["candidate"].to_pylist()]
        tables.append(table.set_column(table.schema.get_field_index("candidate"), "candidate", pa.array(names)))
    tasks = {}
    for meta in metas:
        tasks |= meta["tasks"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    combined = pa.concat_tables(tables)
    runs = {run for members in (seeds or {}).values() for run, _ in members[1:]}
    if seeds:
        combined = _seed_means(combined, seeds)
    order = [x for label in labels if label not in runs for x in
             [label, *(f"{label} seed {s}" for _, s in (seeds or {}).get(label, []))]]
    every_label, labels = labels, [label for label in labels if label not in runs]
    stats = {"adjust": "holm", "equivalence_margin": 0.05, **(stats or {})}
    paths = retention_report(out, combined, tasks, title, order=["base", *order], stats=stats)
    if seeds:
        paths["seeds"] = write_text(out / "seeds.csv", _seed_table(combined, tasks, seeds).to_csv(index=False))
    paths["gap"] = write_text(out / "gap.csv", group_gap(combined, tasks, labels).to_csv(index=False))
    if versus is not None:
        if not set(versus) <= set(labels):
            raise ResultsError(f"versus names {list(versus)}; the labels are {labels}")
        paths["head_to_head"] = write_text(out / "head_to_head.csv", head_to_head(
            combined, tasks, *versus, margin=stats["equivalence_margin"]).to_csv(index=False))
    if references:
        if not set(references) <= set(labels):
            raise ResultsError(f"references name {list(references)}; the labels are {labels}")
        paths["against"] = write_text(out / "against.csv", against(combined, tasks, labels, list(references),
                                                                   stats["adjust"]).to_csv(index=False))
        paths["shares"] = write_text(out / "shares.csv", recovery_shares(combined, tasks, references[0], [
            label for label in labels if label != references[0]]).to_csv(index=False))
        paths["lead"] = write_text(out / "lead.csv", _lead(out, combined, tasks, labels[1:], stats).to_csv(
            index=False))
    sources = "\n".join(f"- {label}: `{root}` ({m['config']['model']['name']})" for label, root, m in
                        zip(every_label, roots, metas))
    write_text(out / "sources.md", f"# Sources\n\n{sources}\n")
    write_json(out / SOURCES, {label: str(Path(root).resolve()) for label, root in zip(every_label, roots)},
               sort_keys=False)
    return paths


def _seed_means(combined, seeds: dict[str, list[tuple[str, int]]]):
    """Each seeded method's runs relabelled `label seed S`, and the method's own rows the mean over its runs per
    item (the items every run has)."""
    import pandas as pd
    import pyarrow as pa

    from prunelab.results import SCHEMA

    frame = combined.to_pandas()
    rename = {run: f"{label} seed {s}" for label, members in seeds.items() for run, s in members}
    means = []
    for label, members in seeds.items():
        rows = frame[frame.candidate.isin([run for run, _ in members])]
        counts = rows.groupby(["task", "item_id", "metric"])["value"].transform("size")
        rows = rows[counts == len(members)]
        # over the runs, whose `model` (each run's checkpoint) differs: the mean row is the first run's model's
        mean = rows.groupby(["task", "item_id", "metric"], as_index=False).agg(value=("value", "mean"))
        first = frame.loc[frame.candidate == members[0][0], "model"]
        means.append(mean.assign(model=first.iloc[0] if len(first) else label, candidate=label,
                                 removed=[[] for _ in range(len(mean))]))
    frame["candidate"] = frame["candidate"].replace(rename)
    out = pd.concat([frame, *means], ignore_index=True)[SCHEMA.names]
    return pa.Table.from_pandas(out, schema=SCHEMA, preserve_index=False)


def _seed_table(combined, tasks: dict, seeds: dict[str, list[tuple[str, int]]]):
    """Per seeded method and task group: its runs' retentions (the spread between seeds) and the method's mean
    retention with a 95% interval over seeds and items (`stats.seed_item_retention_ci`)."""
    import pandas as pd

    from prunelab.report.retention import GROUPS, primary_values
    from prunelab.stats import mean_retention_ci, seed_item_retention_ci

    per_task_values = primary_values(combined, tasks)
    rows = []
    for label, members in seeds.items():
        runs = [f"{label} seed {s}" for _, s in members]
        row = {"model": label, "seeds": " ".join(str(s) for _, s in members)}
        for group in GROUPS:
            per_task = []
            for task, desc in tasks.items():
                if desc["kind"] != group:
                    continue
                wide = per_task_values[task]
                if {"base", *runs} <= set(wide):
                    values = wide[["base", *runs]].dropna().to_numpy(float).T
                    per_task.append((values[0], values[1:]))
            if not per_task:
                continue
            each = [mean_retention_ci([(b, c[i]) for b, c in per_task])[0] for i in range(len(runs))]
            point, low, high = seed_item_retention_ci(per_task)
            row |= {f"{group}_min": min(each), f"{group}_max": max(each), f"{group}_mean": point,
                    f"{group}_mean:ci_low": low, f"{group}_mean:ci_high": high}
        rows.append(row)
    return pd.DataFrame(rows)


def _lead(out: Path, combined, tasks: dict, models: list[str], stats: dict):
    """The two of `models` with the highest retention on the primary endpoint (`stats.primary`, from the retention
    table just written), the first against the second: `retention.head_to_head`'s row of that endpoint."""
    import pandas as pd

    from prunelab.artifacts import RETENTION
    from prunelab.config import StatsSpec
    from prunelab.report.retention import head_to_head

    columns = ["best", "runner_up", "best_retention", "runner_up_retention", "difference", "ci_low", "ci_high",
               "p_value", "items", "changed", "equivalence_p"]
    column, row_label = StatsSpec(primary=stats.get("primary", "generative")).primary_row(tasks)
    table = pd.read_csv(out / RETENTION, index_col=0)
    if column not in table or len(models) < 2:
        return pd.DataFrame(columns=columns)
    ranked = table.loc[[m for m in models if m in table.index], column].dropna().sort_values(
        ascending=False, kind="stable")
    if len(ranked) < 2:
        return pd.DataFrame(columns=columns)
    best, runner_up = ranked.index[:2]
    frame = head_to_head(combined, tasks, best, runner_up, margin=stats["equivalence_margin"])
    hit = frame[frame["task"] == row_label]
    if hit.empty:
        return pd.DataFrame(columns=columns)
    row = hit.iloc[0]
    return pd.DataFrame([{"best": best, "runner_up": runner_up, "best_retention": row[best],
                          "runner_up_retention": row[runner_up], "difference": row[f"{best} - {runner_up}"],
                          **{c: row[c] for c in columns[5:]}}], columns=columns)


def combine_training_curves(roots: list[str | Path], out: str | Path, labels: list[str] | None = None) -> dict:
    """The training perplexity curves of several `prunelab recover` directories in one plot (SGR against external
    data, as the paper compares them), and their steps in one CSV."""
    import pandas as pd

    from prunelab.atomic import write_text
    from prunelab.errors import ResultsError
    from prunelab.metadata import read_meta
    from prunelab.report.training import plot_curves

    roots = [Path(r) for r in roots]
    metas = [read_meta(r) for r in roots]
    labels = labels or [f"{m['config']['name']} ({m['config']['responses']})" for m in metas]
    if len(labels) != len(roots):
        raise ResultsError(f"labels {labels}: give one label per directory ({len(roots)})")
    curves = {label: RecoverArtifact(root).training_curve() for root, label in zip(roots, labels)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.concat([c.assign(run=label) for label, c in curves.items()])
    return {"training_csv": write_text(out / "training_curves.csv", table.to_csv(index=False)),
            "training_plot": plot_curves(curves, out / "training_curves.png")}


def combine(roots: list[str | Path], out: str | Path, labels: list[str] | None = None,
            title: str = "Retention") -> dict[str, Path]:
    """One report of several directories of the same stage: eval (a retention table) or recover (training curves)."""
    from prunelab.errors import ResultsError
    from prunelab.metadata import read_meta

    stages = {read_meta(r)["stage"] for r in roots}
    if stages == {"eval"}:
        return combine_evals(roots, out, labels, title)
    if stages == {"recover"}:
        return combine_training_curves(roots, out, labels)
    raise ResultsError(f"directories of stages {sorted(stages)}: combine eval directories (one retention table) or "
                       "recover directories (training curves), one stage at a time")


__all__ = ["combine", "combine_evals", "combine_training_curves", "write_report"]
