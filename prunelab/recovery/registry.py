"""The recovery methods, each declared once: what `recover.method` may name, and what every other part of prunelab
asks of a method (its settings section, whether it trains, whether its result is an adapter, how the report calls
it). The config, the identity, the pipeline's stage wiring, the trainer and the report read this; none spells a
method's name. Listing methods imports no torch (configs are validated before anything loads).

A method's module (`module`) holds what runs: `trainer(job, config, tokenizer, dataset, device, output_dir,
world_size, callbacks)` for a method that trains, `transform(config, needs, tokenizer, manifest, out_dir, place)`
for one that rewrites the model first, and `needs(config, facts, manifest) -> dict` for what it reads besides the
corpus, checked before anything is written. A new method is its module, its settings section in
`prunelab.config.sections.RecoverSection` (if it has settings), and one line below.

    sft      (Q)LoRA, SFT on the corpus's responses             recovery/train.py
    kd       (Q)LoRA, distilling the base model's logits        recovery/kd.py
    partial  the last layers, final norm and head, all weights  recovery/partial.py
    linear   no training: least-squares maps folded in          recovery/linear.py (then: sft or kd on top)
"""

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RecoveryMethod:
    name: str
    module: str  # where it runs: trainer() if it trains, needs() for what it reads besides the corpus
    label: Callable[[dict], str]  # how the report calls it, from the recover section (a dict)
    section: str | None = None  # its own settings, RecoverSection.<section>; read by no other method
    trains: bool = True  # runs a trainer (linear alone does not: `then` may train after it)
    transforms: bool = False  # rewrites the model first: its module's transform(config, needs, tokenizer, manifest,
    # out_dir, place) -> record writes a checkpoint (the result, or what `also` trains next)
    adapter: bool = True  # its result is a LoRA adapter to merge (it reads `lora` and `quantization`)
    quantizable: bool = True  # trains on an NF4 (4-bit) base; a method that trains full weights cannot
    description: str = ""
    also: Callable[[object], tuple[str, ...]] = field(default=lambda section: ())  # methods it runs after itself


def _linear_label(recover: dict) -> str:
    then = recover["linear"].get("then")
    return f"linear + {then.upper()}" if then else "linear"


METHODS: dict[str, RecoveryMethod] = {m.name: m for m in [
    RecoveryMethod("sft", "prunelab.recovery.train", lambda r: "SFT",
                   description="(Q)LoRA, supervised fine-tuning on the corpus's responses"),
    RecoveryMethod("kd", "prunelab.recovery.kd", lambda r: "KD", section="kd",
                   description="(Q)LoRA, distilling the base model's next-token distribution (TRL's GKD)"),
    RecoveryMethod("partial", "prunelab.recovery.partial", lambda r: f"partial (last {r['partial']['layers']})",
                   section="partial", adapter=False, quantizable=False,
                   description="the last layers, the final norm and the head trained fully"),
    RecoveryMethod("linear", "prunelab.recovery.linear", _linear_label, section="linear", trains=False,
                   transforms=True, adapter=False, description="training-free: least-squares maps folded into the layer before",
                   also=lambda section: (section.linear.then,) if section.linear.then else ()),
]}
METHOD_SECTIONS = tuple(m.section for m in METHODS.values() if m.section)


def method(name: str) -> RecoveryMethod:
    if name not in METHODS:
        raise ValueError(f"unknown recovery method {name!r}; registered: {', '.join(METHODS)}")
    return METHODS[name]


def check_method_name(name: str) -> str:
    """A config field's validator: `name` is a registered method."""
    method(name)
    return name


def arm_label(arm: str, recover: dict) -> str:
    """How a recovery arm reads in the report: sft arms by their responses (as before other methods existed), every
    other arm as its method calls itself. `recover`: the pipeline's recover section, as a dict."""
    if arm in ("sgr", "reference"):
        return f"SFT {arm}"
    return method(arm).label(recover)


def runs(methods, section) -> set[str]:
    """The methods a recover section runs: `methods` and what they run after themselves (linear's `then`)."""
    out = set(methods)
    for name in methods:
        out.update(method(name).also(section))
    return out


def trained(name: str, section) -> RecoveryMethod | None:
    """The method whose trainer a run of method `name` runs: itself, what it runs after itself, or None."""
    entry = method(name)
    if entry.trains:
        return entry
    after = entry.also(section)
    return method(after[0]) if after else None


__all__ = ["METHODS", "METHOD_SECTIONS", "RecoveryMethod", "arm_label", "check_method_name", "method", "runs", "trained"]
