"""The pieces every stage shares, tested directly: the results store (typed candidates, atomic files, what is done),
the packing of items into units, the retention table, meta.json and reports re-rendered from it."""


import numpy as np
import pyarrow as pa
import pytest

from prunelab.cli import main
from prunelab.errors import ResultsError
from prunelab.execution.plan import plan_units
from prunelab.metadata import identity_hash, read_meta
from prunelab.report.retention import retention_table
from prunelab.results import BASE, Candidate, ResultsStore
from prunelab.tasks import build_task, describe


def test_candidates_are_typed_and_named():
    assert Candidate((3, 1)).removed == (1, 3) and Candidate((3, 1)).name == "drop-1+3"
    assert BASE.name == "base" and BASE.is_base and Candidate((), "model").name == "model"
    assert Candidate((1, 3)) == Candidate((3, 1)) and Candidate((), "model") != BASE


def test_store_round_trip_and_done(tmp_path):
    store = ResultsStore(tmp_path, model="m")
    store.write("arithmetic", Candidate((2,)), [("a", {"acc": 1.0, "logprob": -0.5}), ("b", {"acc": 0.0})])
    store.write("arithmetic", Candidate((), "model"), [("a", {"acc": 1.0})])
    assert store.done() == {("arithmetic", Candidate((2,)), "a"), ("arithmetic", Candidate((2,)), "b"),
                            ("arithmetic", Candidate((), "model"), "a")}
    table = store.read().to_pandas()
    assert len(table) == 4 and set(table.candidate) == {"drop-2", "model"}
    assert table[table.candidate == "drop-2"].removed.map(list).tolist() == [[2]] * 3
    # the same items written again replace their file (atomic rename), never add rows
    store.write("arithmetic", Candidate((2,)), [("a", {"acc": 0.0, "logprob": -1.0}), ("b", {"acc": 1.0})])
    assert len(store.read()) == 4
    assert not list(tmp_path.rglob(".*tmp*")) and not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


def test_claim_refuses_another_experiment_and_names_every_difference(tmp_path):
    store = ResultsStore(tmp_path)
    store.claim({"model": {"name": "a"}, "tasks": [{"name": "piqa", "limit": 4}]})
    store.claim({"model": {"name": "a"}, "tasks": [{"name": "piqa", "limit": 4}]})  # the same: fine
    with pytest.raises(ResultsError, match=r"differs in: base_model, model.name, tasks.0.limit\)"):
        store.check_claim({"model": {"name": "b"}, "base_model": None, "tasks": [{"name": "piqa", "limit": 5}]})
    with pytest.raises(ResultsError, match=r"differs in: tasks\)"):
        store.check_claim({"model": {"name": "a"}, "tasks": [{"name": "piqa"}, {"name": "arc_easy"}]})


def test_units_pack_items_within_the_token_budget_and_skip_what_is_done(tok):
    task = build_task("arithmetic", limit=12)
    items = task.items(tok)
    cands = [BASE, Candidate((0,)), Candidate((1,))]
    plan = plan_units({"arithmetic": task}, tok, cands, set(), batch_tokens=64, generation_unit=4)
    packed = [it.id for u in plan.units for it in u.items]
    assert sorted(packed) == sorted(it.id for it in items) and len(set(packed)) == len(packed)
    assert len(plan.units) > 1 and plan.pending == 3 * len(plan.units)
    for unit in plan.units:  # every unit fits the budget (padded contexts after the shared few-shot prefix)
        reqs = unit.requests
        padded = len(reqs) * max(len(r.context) - r.prefix_len for r in reqs)
        assert padded + sum(len(c) - 1 for r in reqs for c in r.continuations) <= 64 or len(reqs) == 1
    done = {("arithmetic", c, it.id) for c in cands for it in plan.units[0].items}
    done |= {("arithmetic", Candidate((1,)), it.id) for it in items}
    again = plan_units({"arithmetic": task}, tok, cands, done, batch_tokens=64, generation_unit=4)
    assert [u.candidates for u in again.units] == [(BASE, Candidate((0,)))] * (len(plan.units) - 1)

    gsm = build_task("gsm8k", limit=10, max_new_tokens=4)
    gen = plan_units({"gsm8k": gsm}, tok, [BASE], set(), batch_tokens=256, generation_unit=4)
    assert [len(u.items) for u in gen.units] == [4, 4, 2] and all(u.generative for u in gen.units)


def _rows(values: dict[str, list[float]], task="t", metric="acc"):
    rows = []
    for cand, vals in values.items():
        removed = [] if cand == "base" else [int(cand.split("-")[1])]
        rows += [{"model": "m", "task": task, "candidate": cand, "removed": removed, "item_id": str(i),
                  "metric": metric, "value": v} for i, v in enumerate(vals)]
    return rows


def test_retention_table_is_candidate_mean_over_base_mean_with_intervals():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2, 40).astype(float)
    cand = base * rng.integers(0, 2, 40)
    rows = _rows({"base": list(base), "drop-3": list(cand)}) + _rows(
        {"base": [0.5] * 40, "drop-3": [0.25] * 30}, task="g", metric="rougeL")  # 10 items not scored yet
    tasks = {"t": {"kind": "classification", "primary_metric": "acc"},
             "g": {"kind": "generative", "primary_metric": "rougeL"}}
    table = retention_table(pa.Table.from_pylist(rows), tasks)
    assert list(table.index) == ["base", "drop-3"]
    assert table.loc["drop-3", "t"] == pytest.approx(cand.mean() / base.mean())
    assert table.loc["drop-3", "t:ci_low"] < table.loc["drop-3", "t"] < table.loc["drop-3", "t:ci_high"]
    assert table.loc["drop-3", "g"] == pytest.approx(0.5)
    assert table.loc["drop-3", "classification_mean"] == pytest.approx(table.loc["drop-3", "t"])
    assert table.loc["drop-3", "generative_mean"] == pytest.approx(0.5)
    assert table.loc["base", "t"] == 1.0 and table.loc["base", "t:p_value"] == 1.0
    assert table.loc["drop-3", "t:acc"] == pytest.approx(cand.mean())
    # each retention says how many paired items it rests on: a group, its tasks' items
    assert table.loc["drop-3", "t:items"] == 40 and table.loc["drop-3", "g:items"] == 30
    assert table.loc["drop-3", "generative_mean:items"] == 30 and table.loc["base", "g:items"] == 40


def test_head_to_head_of_two_candidates_against_one_base():
    from prunelab.report.retention import group_gap, head_to_head

    rng = np.random.default_rng(4)
    base = rng.integers(0, 2, 40).astype(float)
    sgr = base * (rng.random(40) > 0.3)
    ref = base * (rng.random(40) > 0.7)
    rows = _rows({"base": list(base), "sgr-1": list(sgr), "ref-2": list(ref)}) + _rows(
        {"base": [0.5] * 40, "sgr-1": [0.25] * 40, "ref-2": [0.3] * 40}, task="g", metric="rougeL")
    tasks = {"t": {"kind": "classification", "primary_metric": "acc", "label": "T"},
             "g": {"kind": "generative", "primary_metric": "rougeL", "label": "G"}}
    table = pa.Table.from_pylist(rows)
    frame = head_to_head(table, tasks, "sgr-1", "ref-2").set_index("task")
    retention = retention_table(table, tasks)
    assert list(frame.index) == ["classification mean", "generative mean", "T", "G"]
    diff = "sgr-1 - ref-2"
    assert frame.loc["T", "sgr-1"] == pytest.approx(retention.loc["sgr-1", "t"])
    assert frame.loc["T", diff] == pytest.approx(retention.loc["sgr-1", "t"] - retention.loc["ref-2", "t"])
    assert frame.loc["G", diff] == pytest.approx(0.5 - 0.6)
    assert frame.loc["G", "ci_low"] == pytest.approx(-0.1) and frame.loc["G", "p_value"] < 0.001
    assert frame.loc["T", "ci_low"] < frame.loc["T", diff] < frame.loc["T", "ci_high"]
    assert (frame["items"] == 40).all()
    gap = group_gap(table, tasks, ["sgr-1", "ref-2"]).set_index("model")
    assert gap.loc["ref-2", "classification - generative"] == pytest.approx(retention.loc["ref-2", "t"] - 0.6)


@pytest.mark.slow
def test_meta_json_and_a_report_rerendered_anywhere(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--local", "--model", str(tiny_model_dir("qwen2")), "--base", str(tiny_model_dir("qwen2")),
                 "--tasks", "humaneval,arithmetic", "--limit", "3", "--out", str(out), "--dtype", "float32",
                 "--no-progress", "tasks.0.max_new_tokens=4"]) == 0
    meta = read_meta(out)
    assert meta["stage"] == "eval" and meta["identity_sha256"] == identity_hash(meta["identity"])
    assert meta["config"]["tasks"][0]["max_new_tokens"] == 4 and meta["packages"]["transformers"]
    assert list(meta["tasks"]) == ["humaneval", "arithmetic"]  # the config's order, which tables follow
    header = next(line for line in (out / "retention.md").read_text().splitlines() if line.startswith("|"))
    assert header.index("humaneval") < header.index("arithmetic")
    assert meta["tasks"]["humaneval"] == describe(build_task("humaneval", limit=3, max_new_tokens=4))
    assert meta["tasks"]["humaneval"]["kind"] == "generative" and "base tests" in meta["tasks"]["humaneval"]["source"]
    before = {p: (out / p).read_bytes() for p in ("retention.csv", "retention.md")}
    # the report comes from the store and meta.json alone: moved elsewhere, re-rendered, the same files
    moved = tmp_path / "elsewhere"
    out.rename(moved)
    for p in before:
        (moved / p).unlink()
    capsys.readouterr()
    assert main(["report", str(moved)]) == 0
    assert {p: (moved / p).read_bytes() for p in before} == before
    assert "humaneval (base tests)" in capsys.readouterr().out
    assert main(["report", str(tmp_path)]) == 2  # not an artifact directory: a clear error


def test_report_of_a_directory_without_meta_is_refused(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "has no meta.json" in capsys.readouterr().err


def test_meta_records_what_dtype_auto_means_on_this_machine():
    import torch

    from prunelab.metadata import host_facts
    from prunelab.models.loading import resolve_dtype

    host = host_facts()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert host["dtype_auto"] == str(resolve_dtype("auto", device)).removeprefix("torch.")
    assert host["cpus"] >= 1 and isinstance(host["gpus"], list)


def test_results_and_checkpoints_are_as_readable_as_the_umask_allows(tmp_path):
    """tempfile makes files 0600 and directories 0700; renamed into place, a cluster's shared storage would hide
    them from the group's other users and nodes. They get the mode a plain open() or mkdir() gives."""
    import os
    import stat

    import tiny

    from prunelab.atomic import write_json
    from prunelab.surgery import save_pruned

    for mask, file_mode, dir_mode in ((0o002, 0o664, 0o775), (0o022, 0o644, 0o755)):
        old = os.umask(mask)
        try:
            path = write_json(tmp_path / f"meta-{mask}.json", {"a": 1})
            checkpoint = save_pruned(tiny.model("llama", 2), tiny.tokenizer(), tmp_path / f"ckpt-{mask}",
                                     {"removed_layers": []})
        finally:
            os.umask(old)
        assert stat.S_IMODE(path.stat().st_mode) == file_mode
        assert stat.S_IMODE(checkpoint.stat().st_mode) == dir_mode
        # every file of the checkpoint, the weights included (safetensors writes them through a 0600 temp file)
        files = [f for f in checkpoint.rglob("*") if f.is_file()]
        assert "model.safetensors" in {f.name for f in files}
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: file_mode for f in files}
