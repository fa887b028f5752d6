"""The pipeline on a tiny model, in this process: every stage runs once and is reused on a rerun; a changed knob
recomputes exactly the stages downstream of it; a stage whose output was changed, never finished, or made from
another config is detected and recomputed, never silently reused; a config naming an input no stage produces is
refused before anything runs. The report page renders in a real headless browser with every figure loaded and the
numbers of every table equal to its CSV."""

import copy
import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from browser import browse, hovered, needs_chromium

from prunelab.cli import main
from prunelab.config import PipelineConfig, parse_config
from prunelab.execution.run import InProcessExecutor
from prunelab.pipeline.run import run_pipeline
from prunelab.stages.runtime import Runtime

pytestmark = pytest.mark.slow
LOCAL = Runtime.in_process(progress=False)


def pipeline_data(model_dir, prompts: Path, out: Path) -> dict:
    return {
        "kind": "pipeline", "name": "tiny", "model": {"name": str(model_dir), "dtype": "float32"},
        "tasks": [{"name": "arithmetic", "limit": 12}, {"name": "humaneval", "limit": 3, "max_new_tokens": 8}],
        "generation": {"batch_size": 4, "sandbox_workers": 2},
        "sweep": {"tasks": [{"name": "arithmetic", "limit": 12}, {"name": "humaneval", "limit": 2, "max_new_tokens": 4}],
                  "sweep": {"batch_tokens": 512}},
        "prune": {"strategies": ["block_influence", "reverse"], "ratios": [0.25],
                  "calibration": {"samples": 4, "max_length": 32}, "sweep": {"batch_tokens": 512}},
        "sgr": {"chat_template": "plain",
                "prompts": {"source": str(prompts), "limit": None, "exclude_tasks": [], "max_prompt_tokens": 128},
                "sampling": {"max_new_tokens": 4}, "engine": {"shard_size": 4, "batch_size": 4}},
        # a tiny random model never stops within a few tokens, so every SGR answer is truncated and dropped: it
        # trains on the corpus's original answers (SGR training itself: tests/test_recover.py)
        "recover": {"targets": ["block_influence@0.25"], "responses": ["reference"], "others_on": "reference",
                    "methods": ["sft", "kd", "partial", "linear"],
                    "linear": {"calibration": {"samples": 4, "max_length": 32}},
                    "training": {"max_steps": 2, "save_steps": 2, "batch_size": 4, "per_device_batch_size": 2,
                                 "max_length": 128, "warmup_steps": 0}},
        "cost": {"prompt_tokens": 8, "new_tokens": 3, "batch_size": 2, "warmup": 0, "runs": 1, "rounds": 2},
        "output_dir": str(out)}


def run(data: dict, say=None) -> dict:
    lines = []
    summary = run_pipeline(parse_config(data, cls=PipelineConfig), LOCAL, say=lines.append)
    return {s["name"]: s for s in summary["stages"]} | {"_lines": lines}


def statuses(result: dict, status: str) -> set[str]:
    return {n for n, s in result.items() if n != "_lines" and s["status"] == status}


@pytest.fixture(scope="module")
def finished(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"instruction": f"What is {i} + {i}?", "output": f"It is {2 * i}."}) + "\n"
                               for i in range(8)))
    data = pipeline_data(tiny_model_dir("llama"), prompts, root / "out")
    first = run(data)
    return data, first


def test_every_stage_runs_once_and_a_rerun_reuses_them_all(finished):
    data, first = finished
    arms = ("reference", "kd", "partial", "linear")
    stages = {"eval-base", "sweep", "compare", "cost", "sgr", "prune-block_influence@0.25",
              "eval-block_influence@0.25", *(f"{s}-block_influence@0.25-{a}" for s in ("recover", "eval") for a in arms)}
    assert statuses(first, "computed") == stages
    # later evaluations start from the base model's rows: none computed its own base again
    pruned_eval = Path(first["eval-block_influence@0.25"]["dir"])
    rows = pd.concat(pd.read_parquet(p) for p in (pruned_eval / "results").rglob("*.parquet"))
    base_eval = Path(first["eval-base"]["dir"])
    base_rows = pd.concat(pd.read_parquet(p) for p in (base_eval / "results").rglob("*.parquet"))
    ours = rows[rows.candidate == "base"].sort_values(["task", "item_id", "metric"])["value"].to_numpy()
    theirs = base_rows.sort_values(["task", "item_id", "metric"])["value"].to_numpy()
    assert len(ours) and np.array_equal(ours, theirs, equal_nan=True)  # NaN: a degeneration metric skipped
    # compare started from them too, and the pruned checkpoint's evaluation from compare's rows for its layers
    compare = Path(first["compare"]["dir"])
    assert json.loads((compare / "seeded.json").read_text())[0]["stage"] == "eval-base"
    seeded = json.loads((pruned_eval / "seeded.json").read_text())
    assert [(s["stage"], Path(s["from"]).name) for s in seeded] == [
        ("eval-base", "noise-floor"), ("eval-base", base_eval.name), ("compare", compare.name)]
    assert seeded[2]["items"] == {"arithmetic": 12, "humaneval": 3}
    # the base model's noise floor was measured once, in eval-base, and every later stage carries it
    floor = json.loads((base_eval / "meta.json").read_text())["noise_floor"]
    assert floor["tasks"]["humaneval"]["items"] == 3
    for stage in (compare, pruned_eval):
        assert json.loads((stage / "meta.json").read_text())["noise_floor"] == {**floor, "candidate": "base"}

    again = run(data)
    assert statuses(again, "reused") == stages and not statuses(again, "computed")


def test_a_pruned_checkpoint_seeded_from_compare_equals_its_full_evaluation(finished, tmp_path):
    from prunelab.config import EvalConfig
    from prunelab.stages.evaluate import evaluate

    _, first = finished
    pruned_eval = Path(first["eval-block_influence@0.25"]["dir"])
    meta = json.loads((pruned_eval / "meta.json").read_text())["config"]
    config = parse_config({**meta, "base_model": None, "output_dir": str(tmp_path / "full")}, cls=EvalConfig)
    evaluate(config, InProcessExecutor(), progress=False)  # the checkpoint from scratch, nothing seeded

    def model_rows(root):
        rows = pd.concat(pd.read_parquet(p) for p in (root / "results").rglob("*.parquet"))
        return rows[rows.candidate == "model"].sort_values(["task", "item_id", "metric"]).reset_index(drop=True)

    seeded, full = model_rows(pruned_eval), model_rows(tmp_path / "full")
    assert len(seeded) == len(full) > 0
    assert (seeded[["task", "item_id", "metric"]] == full[["task", "item_id", "metric"]]).all().all()
    assert seeded.value.to_numpy() == pytest.approx(full.value.to_numpy(), abs=1e-4, nan_ok=True)  # NaN: skipped


def test_a_pruned_evaluation_is_not_seeded_from_other_layers(finished, tmp_path):
    from prunelab.pipeline.plan import Stage, plan_pipeline
    from prunelab.pipeline.run import seed_pruned_rows

    data, first = finished
    stages = {s.name: s for s in plan_pipeline(parse_config(data, cls=PipelineConfig))}
    compare = Path(first["compare"]["dir"])
    other = tmp_path / "compare"
    shutil.copytree(compare, other)
    selections = json.loads((other / "selections.json").read_text())
    chosen = selections["selections"]["block_influence@0.25"]
    chosen["removed"] = [i for i in range(4) if i not in chosen["removed"]][: len(chosen["removed"])]
    (other / "selections.json").write_text(json.dumps(selections))
    fresh = stages["eval-block_influence@0.25"].config.model_copy(update={"output_dir": str(tmp_path / "eval")})
    stage = Stage("eval-block_influence@0.25", "eval", fresh, (), "", "block_influence@0.25")
    compare_stage = Stage("compare", "compare-strategies",
                          stages["compare"].config.model_copy(update={"output_dir": str(other)}), (), "")
    assert seed_pruned_rows(stage, stages["prune-block_influence@0.25"], compare_stage, "block_influence@0.25") == 0
    assert not (tmp_path / "eval" / "results").exists()


def test_a_changed_knob_recomputes_exactly_what_is_downstream(finished):
    data, _ = finished
    changed = copy.deepcopy(data)
    changed["sgr"]["sampling"]["max_new_tokens"] = 5
    result = run(changed)
    downstream = {"sgr", *(f"{s}-block_influence@0.25-{a}" for s in ("recover", "eval")
                           for a in ("reference", "kd", "partial", "linear"))}
    assert statuses(result, "computed") == downstream
    assert statuses(result, "reused") == {"eval-base", "sweep", "compare", "cost", "prune-block_influence@0.25",
                                          "eval-block_influence@0.25"}
    assert statuses(run(data), "computed") == set()  # the original config's stages are all still there


def test_a_method_setting_recomputes_that_arm_alone(finished):
    """Each recovery arm is its own stage: a knob of one method recomputes its recovery and evaluation only, and a
    training knob every trained arm but not linear's fit, which trains nothing."""
    data, _ = finished
    kd = copy.deepcopy(data)
    kd["recover"]["kd"] = {"beta": 0.9}
    assert statuses(run(kd), "computed") == {"recover-block_influence@0.25-kd", "eval-block_influence@0.25-kd"}
    training = copy.deepcopy(data)
    training["recover"]["training"]["learning_rate"] = 1e-3
    assert statuses(run(training), "computed") == {f"{s}-block_influence@0.25-{a}" for s in ("recover", "eval")
                                                   for a in ("reference", "kd", "partial")}


def test_settings_reuse_and_what_changes_a_number_recomputes(finished):
    """Through the fields' markers: batch sizes and workers are settings (everything reused); the sandbox's time
    limit changes verdicts (every stage that scores code, and what reads them, recomputes); another ratio is another
    candidate (compare, which holds every candidate, cost, which measures each, and the pruned checkpoint's
    evaluation, which starts from compare's rows, recompute; nothing else)."""
    data, _ = finished
    settings = copy.deepcopy(data)
    settings["generation"] |= {"batch_size": 2, "sandbox_workers": 1}
    settings["sgr"]["engine"]["batch_size"] = 2
    assert statuses(run(settings), "computed") == set()

    verdicts = copy.deepcopy(data)
    verdicts["generation"]["sandbox_timeout_s"] = 7.0
    result = run(verdicts)
    computed = statuses(result, "computed")
    # and the log says which setting made it new, not only that it was not computed yet
    assert "not computed yet: the config changed generation.sandbox_timeout_s" in result["eval-base"]["reason"]
    assert {"eval-base", "compare", "eval-block_influence@0.25", "eval-block_influence@0.25-reference"} <= computed
    assert "sgr" not in computed and "recover-block_influence@0.25-reference" not in computed

    candidates = copy.deepcopy(data)
    candidates["prune"]["ratios"] = [0.25, 0.5]
    assert statuses(run(candidates), "computed") == {"compare", "cost", "eval-block_influence@0.25"}
    assert statuses(run(data), "computed") == set()


def test_changed_unfinished_and_foreign_stage_outputs_are_recomputed(finished):
    data, first = finished
    pruned = Path(first["prune-block_influence@0.25"]["dir"])
    config = pruned / "config.json"
    written = config.read_text()
    config.write_text(written.replace("  ", " \t", 1))  # altered after it was written, same size
    sweep = Path(first["sweep"]["dir"])
    (sweep / "stage.json").unlink()  # as if the run had stopped before the stage finished
    compare = Path(first["compare"]["dir"])
    marker = json.loads((compare / "stage.json").read_text())
    (compare / "stage.json").write_text(json.dumps({**marker, "key": "0" * 64}))  # another config's
    result = run(data)
    assert statuses(result, "computed") == {"prune-block_influence@0.25", "sweep", "compare"}
    reasons = {n: s["reason"] for n, s in result.items() if n != "_lines" and s["status"] == "computed"}
    assert "config.json changed since it was written" in reasons["prune-block_influence@0.25"]
    assert "not finished yet" in reasons["sweep"]
    assert "made from another config" in reasons["compare"]
    # a reused stage keeps what it cost when it was computed (a resumed one's time: the test below)
    assert result["eval-base"]["seconds"] == first["eval-base"]["seconds"] > 0
    assert any(p.name.startswith(pruned.name + ".set-aside-") for p in pruned.parent.iterdir())  # kept, not lost
    assert config.read_text() == written  # recomputed: the checkpoint's config as prune writes it, not the altered one
    assert statuses(run(data), "computed") == set()


def test_the_report_opens_with_the_findings_its_tables_show(finished):
    """The findings come first, on both pages, and say what the tables below say: the layers with a significant
    arithmetic drop are the starred cells under 1 of Figure 1's table; a retention the table leaves empty (the
    tiny random base model solves nothing) is not measured, not a finding."""
    from prunelab.report.findings import NO_RETENTION

    data, _ = finished
    report = Path(data["output_dir"]) / "report"
    text = (report / "report.md").read_text()
    lead = text[text.index("## Findings"):text.index("## Stages")]
    assert text.index("## Findings") < text.index("## Stages") and "<section id=findings>" in \
        (report / "report.html").read_text()
    layers = pd.read_csv(report / "tables" / "figure1_layers.csv", dtype=str, keep_default_na=False)
    dropped = [row["removed layer"].split("-")[1] for _, row in layers.iterrows()
               if row["arithmetic"].endswith("*") and float(row["arithmetic"].split()[0]) < 1]
    if (layers["arithmetic"] == "").all():
        assert "flatter.** Not measured.\n  - no task has a retention" in lead
    else:
        assert (f"arithmetic: a significant drop at {len(dropped)} of {len(layers)} layers "
                f"({', '.join(dropped) or 'none'})") in lead
    table1 = pd.read_csv(report / "tables" / "table1_strategies.csv", dtype=str, keep_default_na=False)
    for _, row in table1.iterrows():
        shown = row["classification mean"].rstrip(" *") or NO_RETENTION
        assert f"(layers {row['removed']} removed): classification {shown}" in lead
    if (table1["classification mean"] == "").all():
        assert "exceeds generative retention.** Not measured." in lead
    assert "**SFT on the base model's own answers (SGR) recovers generation better than SFT on the original " \
           "answers.** Not measured." in lead  # this run trains on the original answers only


def test_the_page_shows_the_samples_behind_the_scores(finished):
    """Every stored output of every model, with the outcome it was scored as, is on the page beside the base
    model's (escaped, so a model's output cannot write into the page): the recoveries', and the sweep's with each
    layer removed."""
    import html

    from prunelab.report.samples import samples

    data, first = finished
    report = Path(data["output_dir"]) / "report"
    page = (report / "report.html").read_text()
    recovered = samples(report / "recovery-block_influence-at-0.25")
    assert set(recovered["candidate"]) == {"pruned block_influence@0.25", "+ SFT reference (block_influence@0.25)",
                                           "+ KD (block_influence@0.25)", "+ partial (last 2) (block_influence@0.25)",
                                           "+ linear (block_influence@0.25)"}
    swept = samples(first["sweep"]["dir"])
    assert set(swept["candidate"]) == {f"drop-{i}" for i in range(4)} and set(swept["task"]) == {"humaneval"}
    for table, heading in ((recovered, "Samples: block_influence@0.25 and its recoveries"),
                           (swept, "Samples: the single-layer sweep")):
        start = page.index(f'data-samples="{heading}"')
        end = page.find("data-samples=", start + 1)  # the next samples view, if any
        block = page[start:end if end > 0 else None]
        for r in table.itertuples():
            assert f'data-model="{html.escape(r.candidate)}" data-outcome="{html.escape(r.outcome)}"' in block
            assert f"<pre class=output>{html.escape(r.output)}</pre>" in block
            assert f"<pre class=output>{html.escape(r.base_output)}</pre>" in block


def test_a_file_the_report_needs_that_is_missing_is_an_error_naming_it(finished, tmp_path, capsys):
    from prunelab.artifacts import ArtifactMissing
    from prunelab.report.page import write_pipeline_report

    data, _ = finished
    root, copy = Path(data["output_dir"]).resolve(), tmp_path / "copy"
    shutil.copytree(root, copy)
    summary = json.loads((copy / "pipeline.json").read_text())
    for stage in summary["stages"]:
        stage["dir"] = stage["dir"].replace(str(root), str(copy))
    (copy / "pipeline.json").write_text(json.dumps(summary))
    write_pipeline_report(copy)  # the copy renders as the original
    compare = next(Path(s["dir"]) for s in summary["stages"] if s["name"] == "compare")
    (compare / "strategies.csv").unlink()  # a finished stage's file gone (a partial copy, a cleanup)
    with pytest.raises(ArtifactMissing, match=r"strategies\.csv' is missing: run `prunelab compare-strategies`"):
        write_pipeline_report(copy)
    assert main(["report", str(copy)]) == 2 and "strategies.csv" in capsys.readouterr().err


def test_clean_lists_what_the_config_no_longer_uses_and_removes_it_only_when_asked(finished, tmp_path, capsys):
    """Besides two strays made here, the tests above leave stages of changed knobs and set-aside directories: clean
    lists exactly the entries no stage of the config is, removes them only with --yes, and every planned stage
    stays (a rerun reuses them all)."""
    from prunelab.pipeline.plan import plan_pipeline

    data, _ = finished
    stages = Path(data["output_dir"]) / "stages"
    stale = stages / "compare-000000000000"  # a stage of a knob since changed
    aside = stages / "sgr-111111111111.set-aside-20261207-080000"
    for path in (stale, aside):
        path.mkdir()
        (path / "results.parquet").write_bytes(b"x" * 2048)
    planned = {s.output_dir.name for s in plan_pipeline(parse_config(data, cls=PipelineConfig))}
    planned |= {f"{name}.segments.json" for name in planned}
    strays = {p.name for p in stages.iterdir()} - planned
    assert {stale.name, aside.name} <= strays
    config = tmp_path / "pipeline.yaml"
    config.write_text(json.dumps(data))
    assert main(["clean", str(config)]) == 0
    out = capsys.readouterr().out
    listed = {Path(line.split()[-1]).name for line in out.splitlines() if f"{stages}/" in line}
    assert listed == strays and f"{len(strays)} entries" in out and "nothing removed" in out
    assert stale.exists() and aside.exists()
    assert main(["clean", str(config), "--yes"]) == 0
    assert f"removed {len(strays)} entries" in capsys.readouterr().out
    assert {p.name for p in stages.iterdir()} <= planned and not stale.exists() and not aside.exists()
    assert main(["clean", str(config)]) == 0 and "nothing to clean" in capsys.readouterr().out
    assert statuses(run(data), "computed") == set()  # every stage the config uses is still there


def test_no_rendered_cell_label_or_finding_says_nan(finished):
    """Where a retention or its interval does not exist (the tiny random model scores 0), the page says so in words:
    no 'nan' in the report, its tables or any stage's retention table."""
    import re

    data, _ = finished
    root = Path(data["output_dir"])
    pages = [root / "report" / "report.md", root / "report" / "report.html", *sorted(root.glob("report/**/*.csv")),
             *sorted(root.glob("stages/*/retention.md")), *sorted(root.glob("stages/*/strategies.md"))]
    assert len(pages) > 10
    text = {str(p): re.sub(r"<script.*?</script>", "", p.read_text(), flags=re.DOTALL) for p in pages}  # plotly's JS
    said = {p: re.findall(r"[^\n]{0,40}\bnan\b[^\n]{0,20}", t, re.IGNORECASE) for p, t in text.items()}
    assert {p: found for p, found in said.items() if found} == {}
    # the cells that used to say it: a retention of 0 whose bootstrap has no interval, and no retention at all
    from prunelab.report.tables import format_interval

    nan = float("nan")
    assert (format_interval(0.0, nan, nan), format_interval(nan, nan, nan)) == ("0.000 (no interval)", "")


def test_a_pipeline_json_without_stage_roles_is_refused_with_how_to_renew_it(finished, tmp_path):
    from prunelab.artifacts import ArtifactMissing
    from prunelab.report.page import write_pipeline_report

    data, _ = finished
    copy = tmp_path / "old"
    copy.mkdir()
    summary = json.loads((Path(data["output_dir"]) / "pipeline.json").read_text())
    for stage in summary["stages"]:
        stage.pop("role")
    (copy / "pipeline.json").write_text(json.dumps(summary))
    with pytest.raises(ArtifactMissing, match=r"older prunelab; run `prunelab pipeline` on its config again"):
        write_pipeline_report(copy)


def test_every_report_section_a_stage_declares_is_a_function_of_the_page_and_the_run():
    import importlib
    import inspect

    from prunelab.stages.registry import STAGES

    sections = [s for entry in STAGES for s in entry.report]
    assert len({s.at for s in sections}) == len(sections)  # each has its own place on the page
    for section in sections:
        module, _, function = section.render.partition(":")
        assert list(inspect.signature(getattr(importlib.import_module(module), function)).parameters) == ["page", "run"]


def test_a_stopped_segment_counts_up_to_its_last_write(tmp_path):
    import os
    import time

    from prunelab.pipeline import cache

    stage = tmp_path / "stage"
    cache.begin_segment(stage)  # a run starts, writes a result 60 s in, and is killed
    path = cache.segments_path(stage)
    segments = json.loads(path.read_text())
    segments[0]["started"] -= 100
    path.write_text(json.dumps(segments))
    stage.mkdir()
    (stage / "result.parquet").write_bytes(b"x")
    os.utime(stage / "result.parquet", (segments[0]["started"] + 60,) * 2)
    time.sleep(0.2)
    cache.begin_segment(stage)  # the rerun resumes it and finishes
    seconds = cache.mark_done(stage, "s", "k")
    first, second = json.loads((stage / cache.MARKER).read_text())["segments"]
    assert first["ended"] - first["started"] == pytest.approx(60) and first["ended_by"] == "stopped (last write)"
    assert second["ended_by"] == "finished" and seconds == pytest.approx(60 + second["ended"] - second["started"], abs=0.1)
    assert cache.recorded_seconds(stage) == seconds and cache.check(stage, "k")[0] and not path.exists()


def test_a_pipeline_naming_an_input_no_stage_produces_is_refused_before_anything_runs(finished, tmp_path, capsys):
    data, _ = finished
    bad = {**copy.deepcopy(data), "output_dir": str(tmp_path / "never")}
    bad["recover"]["targets"] = ["angular@0.25"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["pipeline", str(path), "--local", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "recover.targets names 'angular@0.25', which no prune stage produces" in err
    assert "block_influence@0.25, reverse@0.25" in err
    assert not (tmp_path / "never").exists()


class Tables(HTMLParser):
    """The tables of a page: data-csv -> rows of (what the CSV holds, what the page shows) per cell, header first;
    the text of each samples block's count of shown items."""

    def __init__(self):
        super().__init__()
        self.tables, self.current, self.row, self.cell, self.attrs, self.shown = {}, None, None, None, {}, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.current = attrs.get("data-csv")
            self.tables[self.current] = []
        elif tag == "tr" and self.current:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = [attrs.get("data-value", attrs.get("data-column")), ""]
        elif tag == "body":
            self.attrs = attrs
        elif tag == "span" and attrs.get("class") == "shown":
            self.cell = ["shown", ""]

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[1] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(tuple(self.cell))
            self.cell = None
        elif tag == "span" and self.cell is not None and self.cell[0] == "shown":
            self.shown.append(self.cell[1])
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.tables[self.current].append(self.row)
            self.row = None
        elif tag == "table":
            self.current = None


def shown_agrees(header: str, raw: str, shown: str) -> bool:
    """A number on the page is the CSV's, in the header's unit, to three significant digits; other text is the
    CSV's."""
    try:
        value = float(raw)
    except ValueError:
        return shown == raw
    if value != value:  # NaN: an empty cell
        return shown == ""
    if not math.isfinite(value):  # text that reads as a float, e.g. the key 71860e207367
        return shown == raw
    scale = 1e-6 if header.endswith("(M)") else 100 if header.endswith("(%)") else 1
    return abs(float(shown.replace(",", "")) - value * scale) <= 0.005 * abs(value * scale) + 0.5e-3


@needs_chromium
def test_every_figure_of_the_page_answers_the_mouse(finished, tmp_path):
    """Every point of every interactive figure on the pipeline's page shows a label under the mouse; a retention's
    label gives its interval and item count, the base model's says it is the reference (the figures' contents
    point by point: tests/test_interactive.py)."""
    data, _ = finished
    labels, _, body = hovered(Path(data["output_dir"]) / "report" / "report.html", tmp_path)
    assert len(labels) == int(body["data-interactive"]) >= 5
    assert labels["figure-training_curves"]  # two runs' perplexity per step
    for figure, points in labels.items():
        for name, _, text in points:
            assert text.strip(), (figure, name)
            if "retention" in text:
                assert "(the reference: 1 by definition)" in text if text.startswith("base") else \
                    re.search(r"retention \d+\.\d{3} \[\d+\.\d{2}, \d+\.\d{2}\]\s*\d+ items", text), text


@needs_chromium
def test_the_report_page_renders_in_a_browser_with_its_figures_and_the_csv_numbers(finished, tmp_path):
    data, _ = finished
    report = Path(data["output_dir"]) / "report"
    page = report / "report.html"
    dom = browse(page, tmp_path)
    parsed = Tables()
    parsed.feed(dom.stdout)
    figures = int(parsed.attrs["data-figures"])
    assert figures >= 4 and int(parsed.attrs["data-figures-loaded"]) == figures  # every embedded figure decoded
    # every figure is drawn interactive too, offline: the page's own copy of plotly.js
    assert int(parsed.attrs["data-interactive"]) == int(parsed.attrs["data-interactive-drawn"]) == figures
    assert "<script src=" not in page.read_text()
    expected_tables = {"tables/stages.csv", "tables/table1_strategies.csv", "tables/figure1_layers.csv",
                       "tables/arithmetic_probe.csv", "tables/table2_recovery_block_influence_0.25.csv",
                       "tables/code_errors_block_influence_0.25.csv", "tables/degeneration_block_influence_0.25.csv",
                       "tables/cost_retention.csv", "tables/cost.csv", "tables/recovery_methods.csv"}
    assert expected_tables <= set(parsed.tables)
    for rel, rows in parsed.tables.items():
        csv = pd.read_csv(report / rel, dtype=str, keep_default_na=False)
        assert [column for column, _ in rows[0]] == list(csv.columns), rel
        assert [[raw for raw, _ in row] for row in rows[1:]] == csv.to_numpy().tolist(), rel  # every digit kept
        headers = [shown for _, shown in rows[0]]
        for row in rows[1:]:  # and what a person reads is the same number, rounded, in the header's unit
            assert all(shown_agrees(h, raw, shown) for h, (raw, shown) in zip(headers, row)), (rel, row)
    assert page.read_text().count('class=samples') == len(parsed.shown) >= 2
    assert all(text.endswith(" items") and text.split()[0] == text.split()[2] for text in parsed.shown)  # filters ran
    assert "Uncaught" not in dom.stderr, dom.stderr[-2000:]  # no script error
    labels = re.findall(r"<b>([^<]*)</b>", page.read_text())  # a missing value reads as nothing, never as "nan"
    assert labels and not [label for label in labels if re.search(r"\bnan\b", label)]
    assert "retention" in (report / "report.md").read_text()
