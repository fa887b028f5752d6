"""`prunelab recover`: fine-tune a pruned model on an SGR corpus (or its original answers) with (Q)LoRA, then merge.

    run(config, runtime) -> RecoverArtifact  # the stage's entry point: Ray Train workers, or here (num_workers 0)
    recover(config)                          # in this process (LoRA on CPU, QLoRA on a GPU)
    recover(config, trainer=runner)          # runner(job, out) -> final HF checkpoint: Ray Train (distributed/train)

Output directory:
    adapter/                the trained LoRA adapter (PEFT)
    merged/                 the adapter merged into the pruned model reloaded unquantized: `prunelab eval` loads it
    training_curve.csv/png  loss and perplexity per step
    meta.json               config, lineage (base model, pruning manifest, corpus hashes), counts, steps, losses
"""

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from prunelab.artifacts import MERGED, RecoverArtifact
from prunelab.atomic import write_json
from prunelab.config import RecoverConfig
from prunelab.errors import DataError, ModelError
from prunelab.metadata import META_FILE, build_meta, identity_hash
from prunelab.models import inspect_model
from prunelab.models.templates import apply_template
from prunelab.recovery.data import select_examples
from prunelab.recovery.run import TrainJob, train_in_process
from prunelab.recovery.train import accumulation_steps, check_lora_targets, merge_adapter
from prunelab.report.training import write_curve
from prunelab.results import ResultsStore
from prunelab.sgr.shards import read_corpus
from prunelab.stages.runtime import here
from prunelab.surgery import MANIFEST_NAME

Trainer = Callable[[TrainJob, Path], Path]
ADAPTER = "adapter"


def _same_path(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve() if Path(a).exists() else a == b


def check_lineage(model_path: str, model_name: str, corpus: str, corpus_meta: dict) -> dict:
    """The pruned model's manifest, after checking that its base model is the one that wrote the corpus."""
    manifest_path = Path(model_path) / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    base = manifest.get("base_model_path", model_path)
    if not _same_path(base, corpus_meta["model_path"]):
        raise DataError(f"corpus {corpus!r} was made by {corpus_meta['model_path']!r}, but {model_name!r} "
                        f"{'was pruned from' if manifest else 'is'} {base!r}: SGR trains a pruned model on its own "
                        "base model's answers; make the corpus with that base model (prunelab sgr model.name=...)")
    return manifest


def check_adapter(out: Path, model_path: str, model_name: str) -> None:
    """An adapter already in the output directory must belong to this model."""
    config_path = out / ADAPTER / "adapter_config.json"
    if not config_path.exists():
        return
    trained_on = json.loads(config_path.read_text()).get("base_model_name_or_path")
    if trained_on and not _same_path(trained_on, model_path):
        raise ModelError(f"{str(out)!r} holds an adapter trained on {trained_on!r}, not on {model_name!r} "
                         f"({model_path}); choose another output_dir or delete that directory")


def recover(config: RecoverConfig, trainer: Trainer | None = None, progress: bool = True, place=here) -> Path:
    """Trains (or resumes, or finds finished) the recovery of `config`; returns the output directory."""
    out = Path(config.output_dir).resolve()
    store = ResultsStore(out)
    store.check_claim(config.identity())
    facts = inspect_model(config.model)
    rows, corpus_meta = read_corpus(config.corpus, config.responses)
    manifest = check_lineage(facts.path, config.model.name, config.corpus, corpus_meta)
    check_adapter(out, facts.path, config.model.name)
    check_lora_targets(facts.config, config.lora.target_modules, config.model.name)
    accumulation_steps(config.training, config.workers.num_workers if trainer is not None else 1)
    if not rows:
        what = "original answers" if config.responses == "reference" else "kept responses"
        raise DataError(f"corpus {config.corpus!r} ({corpus_meta['config']['prompts']['source']}) has no {what} to "
                        f"train on ({corpus_meta['counts']}); "
                        + ("use responses: sgr, or a corpus with answers (sharegpt, or a dataset with messages / "
                           "output / completion)" if config.responses == "reference" else
                           "raise sampling.max_new_tokens (truncated responses are dropped)"))
    template = corpus_meta["chat_template"]
    tokenizer = apply_template(facts.tokenizer, template)
    examples, counts = select_examples(config.corpus, config.responses, tokenizer, config.training.max_length,
                                       config.paired)
    store.claim(config.identity())

    meta = json.loads((out / META_FILE).read_text()) if (out / META_FILE).exists() else {}
    if meta.get("complete") and (out / MERGED).exists():
        return out
    lineage = {"pruned_model": facts.path, "base_model": manifest.get("base_model", corpus_meta["config"]["model"]["name"]),
               "base_model_path": corpus_meta["model_path"], "pruning_manifest": manifest,
               "corpus": str(Path(config.corpus).resolve()), "corpus_sha256": corpus_meta["corpus_sha256"],
               "prompts_sha256": corpus_meta["prompts_sha256"], "chat_template_sha256": corpus_meta["chat_template_sha256"]}
    lineage["example_ids"] = [e["id"] for e in examples]
    write_json(out / META_FILE, build_meta("recover", config, lineage=lineage, counts=counts, complete=False),
               sort_keys=False)

    # absolute paths: a Ray Train worker runs in a directory of its own (relative ones would read as hub ids)
    model_path = str(Path(facts.path).resolve()) if Path(facts.path).exists() else facts.path
    job_config = config.model_copy(update={"corpus": str(Path(config.corpus).resolve())})
    job = TrainJob(config=job_config.model_dump(mode="json"), model_path=model_path, chat_template=template,
                   run_name=f"recover-{identity_hash(config.identity())[:12]}",
                   storage_path=config.workers.storage_path or str(out / "train"))
    start = time.perf_counter()
    checkpoint = trainer(job, out) if trainer is not None else train_in_process(job, out)
    train_s = time.perf_counter() - start

    adapter = out / ADAPTER
    tmp = out / f".{ADAPTER}-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy2(checkpoint / name, tmp / name)
    shutil.rmtree(adapter, ignore_errors=True)
    tmp.replace(adapter)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    paths = write_curve(state["log_history"], out, f"{config.name} ({config.responses})")

    recovery = {"strategy": "sft-lora", "responses": config.responses, "corpus": lineage["corpus"],
                "corpus_sha256": lineage["corpus_sha256"], "adapter": str(adapter)}
    merged_manifest = {**manifest, "recovery": recovery} if manifest else {"recovery": recovery}
    # where the training ran (a GPU node on a cluster), not on a small head: absolute paths, as for the workers
    place(merge_adapter, model_path, str(adapter.resolve()), tokenizer, str((out / MERGED).resolve()),
          config.model.dtype, {MANIFEST_NAME: json.dumps(merged_manifest, indent=2)})
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    training = {"steps": state["global_step"], "epochs": state.get("epoch"), "first_loss": losses[0] if losses else None,
                "last_loss": losses[-1] if losses else None, "train_seconds_this_run": round(train_s, 1),
                "curve": str(paths["training_csv"].name)}
    write_json(out / META_FILE, build_meta("recover", config, lineage=lineage, counts=counts, training=training,
                                           complete=True), sort_keys=False)
    return out



def run(config: RecoverConfig, runtime) -> RecoverArtifact:
    on_ray = runtime.trainer and config.workers.num_workers > 0
    trainer = runtime.trainer(config.workers) if on_ray else None
    place = runtime.worker_task(config.workers) if on_ray else here
    return RecoverArtifact(recover(config, trainer, progress=runtime.progress, place=place))
