"""SGR corpora: prompts chosen by seed, length and test overlap; shards written atomically and resumed; the Ray Data
pipeline gives the same corpus as this process, a generator actor killed mid-run loses and repeats nothing, and a
finished batch is on disk while the next one generates."""

import copy
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fresh_ray import start_ray

from prunelab.cli import main
from prunelab.config import SGRConfig, parse_config
from prunelab.data.prompts import Prompt, load_prompts, prompts_from_rows
from prunelab.errors import ConfigError, DataError, ModelError, ResultsError
from prunelab.sgr.generate import ResponseGenerator
from prunelab.sgr.select import select_prompts
from prunelab.sgr.shards import CorpusShards
from prunelab.stages.sgr import generate_corpus

TESTS = str(Path(__file__).parent)


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    rows = [{"instruction": f"What is {i} + {i}?", "input": "", "output": f"{2 * i}"} for i in range(20)]
    rows.append(rows[3])  # a duplicate prompt
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sgr_config(model_dir, prompt_source, out, **extra):
    data = {"kind": "sgr", "name": "t", "model": {"name": str(model_dir), "dtype": "float32"},
            "chat_template": "plain", "output_dir": str(out),
            "prompts": {"source": str(prompt_source), "limit": None, "exclude_tasks": ["gsm8k"], "max_prompt_tokens": 128},
            "sampling": {"max_new_tokens": 6}, "engine": {"shard_size": 8, "batch_size": 4}}
    for key, value in extra.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(data, cls=SGRConfig)


def shard_rows(root):
    return {p.name: pq.read_table(p).to_pylist() for p in sorted((Path(root) / "shards").glob("*.parquet"))}


def test_prompt_layouts_and_packaged_corpora():
    rows = [{"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi?"},
                               {"from": "gpt", "value": "Hello."}, {"from": "human", "value": "More?"}]}]
    assert prompts_from_rows(rows, "x") == [Prompt("0", (("system", "Be brief."), ("user", "Hi?")), "Hello.")]
    rows = [{"messages": [{"role": "user", "content": "Q"}], "id": "a"}, {"prompt": "ignored"}]
    assert prompts_from_rows(rows, "x")[0] == Prompt("a", (("user", "Q"),), None)
    with pytest.raises(DataError, match="none of the known layouts"):
        prompts_from_rows([{"text": "plain text"}], "wikitext")
    with pytest.raises(DataError, match="unknown prompt corpus 'sharegtp'"):
        load_prompts("sharegtp")
    mtbench, ifbench = load_prompts("mtbench"), load_prompts("ifbench")
    assert len(mtbench) == 80 and len(ifbench) == 294
    assert all(p.reference is None and p.messages[0][0] == "user" for p in mtbench + ifbench)


def test_selection_is_seeded_and_drops_duplicates_long_prompts_and_test_items(tok):
    from prunelab.models.templates import PLAIN_TEMPLATE, apply_template
    from prunelab.tasks import benchmark_rows

    tokenizer = apply_template(copy.deepcopy(tok), PLAIN_TEMPLATE)
    question = benchmark_rows("gsm8k")[5]["question"]
    prompts = [Prompt(str(i), (("user", f"Tell me about {i}."),)) for i in range(30)]
    prompts += [Prompt("dup", (("user", "Tell me about 4."),)), Prompt("long", (("user", "word " * 400),)),
                Prompt("leak", (("user", "Solve this: " + question),))]
    picked = select_prompts(prompts, tokenizer, None, 0, 64, ["gsm8k"])
    ids = [p.prompt.id for p in picked.prompts]
    assert ("dup" in ids) != ("4" in ids)  # the same prompt twice: whichever the shuffle meets first is kept
    assert "long" not in ids and "leak" not in ids and len(ids) == 30
    assert picked.counts == {"examined": 33, "duplicate": 1, "too_long": 1, "test_overlap": 1, "selected": 30}
    again = select_prompts(prompts, tokenizer, 10, 0, 64, ["gsm8k"])
    other = select_prompts(prompts, tokenizer, 10, 1, 64, ["gsm8k"])
    assert [p.prompt.id for p in again.prompts] == [p.prompt.id for p in select_prompts(
        prompts, tokenizer, 10, 0, 64, ["gsm8k"]).prompts]
    assert [p.prompt.id for p in again.prompts] != [p.prompt.id for p in other.prompts]
    # the chat template renders BOS once; tokenizing the rendering again would add a second
    assert again.prompts[0].prompt_ids.count(tok.bos_token_id) == 1
    with pytest.raises(DataError, match="no prompt of 'corpus' is left after filtering"):
        select_prompts(prompts[-2:-1], tokenizer, None, 0, 64, ["gsm8k"])


def test_corpus_shards_resume_and_meta(tiny_model_dir, prompt_file, tmp_path):
    model = tiny_model_dir("qwen2")
    config = sgr_config(model, prompt_file, tmp_path / "c")
    root = generate_corpus(config, progress=False)
    first = shard_rows(root)
    assert list(first) == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    rows = [r for rs in first.values() for r in rs]
    assert len(rows) == 20 and len({r["id"] for r in rows}) == 20
    # a tiny random model never ends on its own: every response is truncated, kept in its shard, marked dropped
    assert {(r["finish_reason"], r["dropped"], r["output_tokens"]) for r in rows} == {("length", "truncated", 6)}
    meta = json.loads((root / "meta.json").read_text())
    assert meta["complete"] and meta["shards"] == 3
    assert meta["counts"]["dropped_truncated"] == 20 and meta["counts"]["dropped_duplicate_prompts"] == 1
    assert "### Assistant:" in meta["chat_template"]

    # a stopped run: one shard lost; the rerun generates that shard alone, and the same answers
    (root / "shards" / "shard-00001.parquet").unlink()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (root / "shards").glob("*.parquet")}
    generate_corpus(config, progress=False)
    assert shard_rows(root) == first
    assert {p.name: p.stat().st_mtime_ns for p in (root / "shards").glob("*.parquet")
            if p.name in mtimes} == mtimes

    changed = sgr_config(model, prompt_file, tmp_path / "c", sampling={"max_new_tokens": 7})
    with pytest.raises(ResultsError, match=r"belongs to another experiment \(differs in: sampling.max_new_tokens"):
        generate_corpus(changed, progress=False)


def test_driver_drops_rows_a_retried_batch_repeats(tiny_model_dir, prompt_file, tmp_path):
    model = tiny_model_dir("qwen2")
    config = sgr_config(model, prompt_file, tmp_path / "c")

    def repeating(config, facts, template, progress):
        generator = ResponseGenerator(model=str(model), dtype="float32", chat_template=template,
                                      sampling=config.sampling.model_dump(), batch_size=4)

        def run(rows):
            for start in range(0, len(rows), 4):
                out = generator({k: [r[k] for r in rows[start:start + 4]] for k in rows[0]})
                batch = [dict(zip(out, v)) for v in zip(*out.values())]
                yield batch
                yield batch[:2]  # as a batch retried after its actor died would
        return run

    root = generate_corpus(config, repeating, progress=False)
    rows = [r for rs in shard_rows(root).values() for r in rs]
    assert sorted(r["id"] for r in rows) == sorted({r["id"] for r in rows}) and len(rows) == 20


def test_bad_input_is_refused_before_anything_is_written(tiny_model_dir, prompt_file, tmp_path, capsys):
    model = tiny_model_dir("qwen2")
    with pytest.raises(ModelError, match="has no chat template .* chat_template: plain"):
        generate_corpus(sgr_config(model, prompt_file, tmp_path / "a", chat_template="auto"), progress=False)
    with pytest.raises(ConfigError, match=r"exceed the context of .* \(512 tokens\)"):
        generate_corpus(sgr_config(model, prompt_file, tmp_path / "b", sampling={"max_new_tokens": 500}),
                        progress=False)
    with pytest.raises(DataError, match="no prompt .* is left after filtering"):
        generate_corpus(sgr_config(model, prompt_file, tmp_path / "c", prompts={"max_prompt_tokens": 8}),
                        progress=False)
    assert not any((tmp_path / d).exists() for d in "abc")
    code = main(["sgr", "--local", "--no-progress", "--out", str(tmp_path / "d"), "kind=sgr", "name=x",
                 f"model.name={model}", "chat_template=plain", "sampling.max_new_tokens=8", "prompts.max_prompt_tokens=64",
                 "prompts.source=nowhere"])
    assert code == 2 and "unknown prompt corpus 'nowhere'" in capsys.readouterr().err


class DyingGenerator(ResponseGenerator):
    """Kills its own process on its first batch (once per test: a marker file), as an out-of-memory kill would."""

    def __call__(self, batch):
        marker = Path(os.environ["PRUNELAB_TEST_MARKER"])
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().__call__(batch)


@pytest.mark.slow
def test_ray_data_corpus_equals_in_process_and_survives_a_killed_actor(tiny_model_dir, prompt_file, tmp_path):
    import ray

    from prunelab.distributed.sgr import hf_responses
    from prunelab.stages.sgr import generator_kwargs

    model = tiny_model_dir("qwen2")
    local = generate_corpus(sgr_config(model, prompt_file, tmp_path / "local"), progress=False)
    marker = tmp_path / "killed"
    start_ray(num_cpus=2, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": TESTS, "PRUNELAB_TEST_MARKER": str(marker)}})
    try:
        config = sgr_config(model, prompt_file, tmp_path / "ray", engine={"replicas": 2})

        def dying(config, facts, template, progress):
            return lambda rows: hf_responses(rows, config.engine, generator_kwargs(config, facts, template),
                                             generator_class=DyingGenerator, progress=False)

        root = generate_corpus(config, dying, progress=False)
    finally:
        ray.shutdown()
    assert marker.exists()  # an actor did die mid-run
    assert shard_rows(root) == shard_rows(local)
    assert len(CorpusShards(root).read()) == 20


class WaitingGenerator(ResponseGenerator):
    """One actor, a shard per batch: holds each batch until the shard of the batch it finished before is on disk
    (20 s at most), and records whether it came."""

    previous = None

    def __call__(self, batch):
        import time

        root = Path(os.environ["PRUNELAB_TEST_CORPUS"])
        if self.previous is not None:
            deadline = time.monotonic() + 20
            previous = CorpusShards(root).path(self.previous)
            while not previous.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            with open(root.parent / "waits.txt", "a") as f:
                f.write(f"{self.previous} {'written' if previous.exists() else 'missing'}\n")
        with open(root.parent / "visible.txt", "a") as f:  # an actor given no GPU must see none
            f.write(repr(os.environ.get("CUDA_VISIBLE_DEVICES")) + "\n")
        out = super().__call__(batch)
        self.previous = int(batch["shard"][0])  # Ray Data may run the batches in any order
        return out


@pytest.mark.slow
def test_a_finished_batch_is_on_disk_while_the_next_one_generates(tiny_model_dir, prompt_file, tmp_path):
    """A killed driver loses only the batch in flight: each batch reaches the driver (and its shard the disk) when it
    is done, not when the next one is (Ray Data's prefetch held it back: 17 minutes lost at real scale)."""
    import ray

    from prunelab.distributed.sgr import hf_responses
    from prunelab.stages.sgr import generator_kwargs

    out = tmp_path / "corpus"
    start_ray(num_cpus=2, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": TESTS, "PRUNELAB_TEST_CORPUS": str(out)}})
    try:
        config = sgr_config(tiny_model_dir("llama"), prompt_file, out, engine={"replicas": 1, "num_cpus": 2,
                                                                              "shard_size": 4, "batch_size": 4})

        def waiting(config, facts, template, progress):
            return lambda rows: hf_responses(rows, config.engine, generator_kwargs(config, facts, template),
                                             generator_class=WaitingGenerator, progress=False)

        generate_corpus(config, waiting, progress=False)
    finally:
        ray.shutdown()
    waits = (tmp_path / "waits.txt").read_text().split("\n")[:-1]
    assert len(waits) == 4 and all(w.endswith("written") for w in waits), waits
    assert len(CorpusShards(out).read()) == 20
    # num_gpus 0: the actor is told to see no GPU (and still gets the job's own environment, merged)
    assert set((tmp_path / "visible.txt").read_text().split()) == {"''"}


def test_a_sampled_response_does_not_depend_on_its_batch(tiny_model_dir, tok):
    """Each row draws from its own stream (the config's seed and the row's id): answered in a batch of four or
    alone, and in another order, the same responses."""
    from prunelab.models.templates import PLAIN_TEMPLATE
    from prunelab.sgr.generate import ResponseGenerator, row_seed

    texts = ["Question: What is 2 + 3? Answer:", "The quick brown fox", "def add(a, b):", "A cat sat on"]
    ids = [f"p{i}" for i in range(4)]
    batch = {"id": ids, "shard": [0] * 4, "messages": ["[]"] * 4, "reference": [None] * 4,
             "prompt_ids": [tok(t)["input_ids"] for t in texts], "seed": [row_seed(5, i) for i in ids]}
    generator = ResponseGenerator(str(tiny_model_dir("qwen2")), "float32", PLAIN_TEMPLATE,
                                  {"max_new_tokens": 8, "temperature": 0.9, "top_p": 0.95, "seed": 5}, batch_size=4)
    together = generator(batch)
    alone = [generator({k: [v[i]] for k, v in batch.items()})["response"][0] for i in (3, 2, 1, 0)][::-1]
    assert together["response"] == alone and len(set(alone)) > 1
    assert together["seed"] == batch["seed"]


def test_sgr_on_ray_in_a_log_prints_its_own_progress_not_ray_datas_block(tiny_model_dir, prompt_file, tmp_path):
    """stdout and stderr to a file, as under nohup: Ray Data's progress block (a dozen lines every few seconds) and
    its notice that the bars are off are not there; the stage's own line counts the responses."""
    import subprocess
    import sys

    import yaml

    config = sgr_config(tiny_model_dir("qwen2"), prompt_file, tmp_path / "out", engine={"replicas": 1})
    path = tmp_path / "sgr.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    log = tmp_path / "sgr.log"
    with log.open("w") as out:
        done = subprocess.run([sys.executable, "-m", "prunelab", "sgr", str(path)], stdout=out,
                              stderr=subprocess.STDOUT, timeout=600, env={**os.environ, "PRUNELAB_HEARTBEAT_S": "0"})
    text = log.read_text()
    assert done.returncode == 0, text
    assert "Running Dataset" not in text and "logging_progress" not in text
    assert "Progress bars disabled" not in text
    assert "sgr t: 100%" in text  # prunelab's own bar, as lines
