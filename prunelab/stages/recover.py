"""`prunelab recover`: heal a pruned model with one method (`method`, prunelab.recovery.methods): sft ((Q)LoRA SFT on an
SGR corpus or its original answers), kd ((Q)LoRA distilling the base model's logits on the corpus's texts), partial
(the last layers, final norm and head trained fully) or linear (least-squares maps folded into the weights, no
training; `then:` sft or kd on top).

    run(config, runtime) -> RecoverArtifact  # the stage's entry point: Ray Train workers, or here (num_workers 0)
    recover(config)                          # in this process (LoRA on CPU, QLoRA on a GPU)
    recover(config, trainer=runner)          # runner(job, out) -> final HF checkpoint: Ray Train (distributed/train)

Output directory:
    adapter/                sft, kd: the trained LoRA adapter (PEFT)
    linear/                 linear with then: the folded checkpoint that was trained
    merged/                 the result as a stock checkpoint (adapter merged into the pruned model reloaded
                            unquantized, partial's trained weights, or linear's folded model): `prunelab eval` loads it
    training_curve.csv/png  loss and perplexity per step
    checkpoints/, train/    resume state while training runs (weights and optimizer per checkpoint), removed when it
                            has finished unless training.keep_checkpoints
    meta.json               config, lineage (base model, pruning manifest, corpus hashes, calibration, teacher),
                            counts, and the budget: method, steps, examples per step, tokens, trainable parameters
"""

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prunelab.artifacts import MERGED, RecoverArtifact
from prunelab.atomic import write_json
from prunelab.config import RecoverConfig
from prunelab.errors import DataError, ModelError
from prunelab.metadata import META_FILE, build_meta, identity_hash
from prunelab.models import inspect_model
from prunelab.models.loading import attention_kwargs
from prunelab.models.templates import apply_template
from prunelab.paths import tree_bytes
from prunelab.recovery.data import select_examples
from prunelab.recovery.methods import trainable_parameters
from prunelab.recovery.run import RAY_STORAGE, TrainJob, resume_state, train_in_process
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


def check_method(config: RecoverConfig, facts, manifest: dict) -> dict:
    """What the method (and what it trains after itself) reads besides the corpus, checked before anything is
    written (each method's module says: linear's base model, layers and calibration texts, kd's teacher, partial's
    layer count), and the parameters it trains."""
    from prunelab.recovery.methods import method_needs, trained_method

    needs = method_needs(config.method, config, facts, manifest)
    method = trained_method(config)
    if method is None:
        return needs
    if method.name != config.method:
        needs |= method_needs(method.name, config, facts, manifest)
    if method.adapter:
        check_lora_targets(facts.config, config.lora.target_modules, config.model.name)
    needs["trainable_parameters"] = trainable_parameters(facts.config, config, method)
    return needs


def _install_adapter(checkpoint: Path, out: Path) -> Path:
    adapter = out / ADAPTER
    tmp = out / f".{ADAPTER}-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy2(checkpoint / name, tmp / name)
    shutil.rmtree(adapter, ignore_errors=True)
    tmp.replace(adapter)
    return adapter


def save_trained(checkpoint: str, tokenizer, out_dir: str, dtype: str, files: dict[str, str]) -> Path:
    """partial's result: the trained checkpoint's weights (every parameter, the frozen ones as loaded), saved as a
    stock checkpoint in `dtype` (auto: the checkpoint's own) with `files` beside it."""
    from transformers import AutoModelForCausalLM

    from prunelab.hardware import device_name
    from prunelab.recovery.train import checkpoint_dtype
    from prunelab.surgery import save_pruned

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=checkpoint_dtype(checkpoint, dtype),
                                                 device_map={"": device_name()}, **attention_kwargs(checkpoint))
    manifest_files = dict(files)
    manifest = manifest_files.pop(MANIFEST_NAME, None)
    return save_pruned(model, tokenizer, out_dir, json.loads(manifest) if manifest else {}, manifest_files)


@dataclass
class Inputs:
    """What a recover run reads, every part checked before anything is written."""

    facts: object
    manifest: dict
    corpus_meta: dict
    tokenizer: object
    method: object  # the RecoveryMethod whose trainer runs, or None (a transformation alone)
    needs: dict
    examples: list
    counts: dict


def read_inputs(config: RecoverConfig, distributed: bool) -> Inputs:
    """The pruned model (its lineage against the corpus), the corpus's examples, what the method needs besides; a
    `DataError` / `ModelError` naming what is wrong otherwise."""
    from prunelab.recovery.methods import trained_method

    out = Path(config.output_dir).resolve()
    facts = inspect_model(config.model)
    rows, corpus_meta = read_corpus(config.corpus, config.responses)
    manifest = check_lineage(facts.path, config.model.name, config.corpus, corpus_meta)
    check_adapter(out, facts.path, config.model.name)
    method = trained_method(config)
    needs = check_method(config, facts, manifest)
    accumulation_steps(config.training, config.workers.num_workers if distributed else 1)
    if method is not None and not rows:
        what = "original answers" if config.responses == "reference" else "kept responses"
        raise DataError(f"corpus {config.corpus!r} ({corpus_meta['config']['prompts']['source']}) has no {what} to "
                        f"train on ({corpus_meta['counts']}); "
                        + ("use responses: sgr, or a corpus with answers (sharegpt, or a dataset with messages / "
                           "output / completion)" if config.responses == "reference" else
                           "raise sampling.max_new_tokens (truncated responses are dropped)"
                           + (", and sampling.thinking_budget (responses cut in thinking are dropped)"
                              if corpus_meta["counts"].get("dropped_cut_in_thinking") else "")))
    tokenizer = apply_template(facts.tokenizer, corpus_meta["chat_template"])
    examples, counts = (select_examples(config.corpus, config.responses, tokenizer, config.training.max_length,
                                        config.paired, config.reasoning) if method is not None else ([], {}))
    return Inputs(facts, manifest, corpus_meta, tokenizer, method, needs, examples, counts)


def _lineage(config: RecoverConfig, given: Inputs) -> dict:
    meta, manifest = given.corpus_meta, given.manifest
    lineage = {"pruned_model": given.facts.path,
               "base_model": manifest.get("base_model", meta["config"]["model"]["name"]),
               "base_model_path": meta["model_path"], "pruning_manifest": manifest,
               "corpus": str(Path(config.corpus).resolve()), "corpus_sha256": meta["corpus_sha256"],
               "prompts_sha256": meta["prompts_sha256"], "chat_template_sha256": meta["chat_template_sha256"],
               "example_ids": [e["id"] for e in given.examples]}
    if "calibration" in given.needs:
        lineage["calibration"] = given.needs["calibration"]
    if "teacher_path" in given.needs:
        lineage["teacher"] = given.needs["teacher_path"]
    return lineage


def _transformed(config: RecoverConfig, given: Inputs, recovery: dict, out: Path, place) -> tuple[Path, dict]:
    """A method that rewrites the model first (`RecoveryMethod.transforms`): its checkpoint (computed once; a rerun
    reads its record) is the result, or, where a training follows, what is trained, in a directory of its own."""
    from prunelab.recovery.methods import transform

    target = out / (config.method if given.method is not None else MERGED)
    if (target / "config.json").exists():
        return target, json.loads((target / MANIFEST_NAME).read_text())["recovery"]
    record = transform(config.method, config, given.needs, given.tokenizer, {**given.manifest, "recovery": recovery},
                       str(target), place)
    return target, record


def recover(config: RecoverConfig, trainer: Trainer | None = None, progress: bool = True, place=here) -> Path:
    """Trains (or resumes, or finds finished) the recovery of `config`; returns the output directory."""
    from prunelab.recovery.registry import method as recovery_method

    out = Path(config.output_dir).resolve()
    store = ResultsStore(out)
    store.check_claim(config.identity())
    given = read_inputs(config, distributed=trainer is not None)
    store.claim(config.identity())
    meta = json.loads((out / META_FILE).read_text()) if (out / META_FILE).exists() else {}
    if meta.get("complete") and (out / MERGED).exists():
        drop_resume_state(config, out)  # a run finished before they were removed, or stopped while removing them
        return out
    lineage = _lineage(config, given)
    write_json(out / META_FILE, build_meta("recover", config, lineage=lineage, counts=given.counts, complete=False),
               sort_keys=False)

    # absolute paths: a Ray Train worker runs in a directory of its own (relative ones would read as hub ids)
    facts = given.facts
    model_path = str(Path(facts.path).resolve()) if Path(facts.path).exists() else facts.path
    recovery = {"method": config.method, "corpus": lineage["corpus"], "corpus_sha256": lineage["corpus_sha256"]}
    extra: dict = {}
    if recovery_method(config.method).transforms:
        transformed, extra[config.method] = _transformed(config, given, recovery, out, place)
        if given.method is None:  # the transformation is the result
            training = {"method": config.method, "steps": 0, "tokens": 0, "trainable_parameters": 0,
                        **extra[config.method]}
            write_json(out / META_FILE, build_meta("recover", config, lineage=lineage, counts=given.counts,
                                                   training=training, complete=True), sort_keys=False)
            return out
        model_path = str(transformed)
        recovery["then"] = given.method.name
    training = _train_and_save(config, given, model_path, recovery, out, trainer, place)
    write_json(out / META_FILE, build_meta("recover", config, lineage=lineage, counts=given.counts,
                                           training={**training, **extra}, complete=True), sort_keys=False)
    drop_resume_state(config, out)
    return out


def _run_name(config: RecoverConfig) -> str:
    return f"recover-{identity_hash(config.identity())[:12]}"


def drop_resume_state(config: RecoverConfig, out: Path) -> int:
    """A finished run's checkpoints served only to resume it: several copies of the weights with their optimizer
    state (9 GB for partial on a 0.5B model whose result is 1.2 GB). Removed unless training.keep_checkpoints;
    returns the bytes freed."""
    if config.training.keep_checkpoints:
        return 0
    freed = 0
    for path in resume_state(out, config.workers.storage_path, _run_name(config)):
        if path.is_dir():
            freed += tree_bytes(path)
            shutil.rmtree(path)
    if freed:
        print(f"recover: removed the resume checkpoints of the finished run ({freed / 2**30:.1f} GiB; "
              f"training.keep_checkpoints=true keeps them)", flush=True)
    return freed


def _train_and_save(config: RecoverConfig, given: Inputs, model_path: str, recovery: dict, out: Path,
                    trainer: Trainer | None, place) -> dict:
    """Trains `model_path` with the method's trainer (here, or on Ray Train), then writes the result as a stock
    checkpoint (`merged/`: the adapter merged in, or the trained weights); returns the training record."""
    method, manifest, tokenizer = given.method, given.manifest, given.tokenizer
    job_config = config.model_copy(update={"corpus": str(Path(config.corpus).resolve())})
    job = TrainJob(config=job_config.model_dump(mode="json"), model_path=model_path,
                   chat_template=given.corpus_meta["chat_template"],
                   run_name=_run_name(config),
                   storage_path=config.workers.storage_path or str(out / RAY_STORAGE),
                   teacher_path=given.needs.get("teacher_path"))
    start = time.perf_counter()
    checkpoint = trainer(job, out) if trainer is not None else train_in_process(job, out)
    train_s = time.perf_counter() - start

    state = json.loads((checkpoint / "trainer_state.json").read_text())
    paths = write_curve(state["log_history"], out, f"{config.name} ({method.name}, {config.responses})")
    recovery["responses"] = config.responses
    files = {MANIFEST_NAME: json.dumps({**manifest, "recovery": recovery} if manifest else {"recovery": recovery},
                                       indent=2)}
    # where the training ran (a GPU node on a cluster), not on a small head: absolute paths, as for the workers
    if method.adapter:
        adapter = _install_adapter(checkpoint, out)
        recovery["adapter"] = str(adapter)
        files[MANIFEST_NAME] = json.dumps({**manifest, "recovery": recovery}, indent=2)
        place(merge_adapter, model_path, str(adapter.resolve()), tokenizer, str((out / MERGED).resolve()),
              config.model.dtype, files)
    else:
        place(save_trained, str(checkpoint.resolve()), tokenizer, str((out / MERGED).resolve()), config.model.dtype,
              files)
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    return {"method": method.name, "steps": state["global_step"], "epochs": state.get("epoch"),
            "examples_per_step": config.training.batch_size,
            "tokens": state.get("num_input_tokens_seen"), "trainable_parameters": given.needs["trainable_parameters"],
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "train_seconds_this_run": round(train_s, 1), "curve": str(paths["training_csv"].name)}


def run(config: RecoverConfig, runtime) -> RecoverArtifact:
    on_ray = runtime.trainer and config.workers.num_workers > 0
    trainer = runtime.trainer(config.workers) if on_ray else None
    place = runtime.worker_task(config.workers) if on_ray else here
    return RecoverArtifact(recover(config, trainer, progress=runtime.progress, place=place))
