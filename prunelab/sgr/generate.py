"""The response generator: a batch of planned prompts in, a batch of corpus rows out. The same class runs in this
process (`prunelab sgr --local`) and as a Ray Data actor (`prunelab.distributed.sgr`), loading the model once."""

import hashlib
import json

from prunelab.generation.base import GenerationRequest, Sampling
from prunelab.generation.reasoning import Budgets
from prunelab.hardware import device_name
from prunelab.sgr.shards import drop_reason, reasoning_columns


def row_seed(seed: int, prompt_id: str) -> int:
    """A per-row seed that depends on the config's seed and the row's id only, so it survives any batching."""
    return (seed * 1_000_003 + int(hashlib.sha1(prompt_id.encode()).hexdigest()[:8], 16)) % 2**31


def input_row(planned, shard: int, seed: int) -> dict:
    p = planned.prompt
    return {"id": p.id, "shard": shard, "messages": json.dumps(p.chat()), "reference": p.reference,
            "prompt_ids": list(planned.prompt_ids), "seed": row_seed(seed, p.id),
            "opens_reasoning": planned.opens_reasoning}


class ResponseGenerator:
    """Loads `model` once (transformers), answers batches of input rows with `generate`.

    Sampled decoding (temperature > 0): each row draws from its own stream, a function of the config's seed and the
    row's id (`generation.hf`: per-request uniforms), so a row's response does not depend on its batch; the seed
    recorded on each row is its row seed (`row_seed`, what a vLLM engine is given for it).

    A reasoning model (`budgets`: `generation.reasoning.Budgets` as a dict) generates up to both budgets; each row's
    response is its answer, its reasoning kept apart, and a response still reasoning at the thinking budget is
    dropped as "cut in thinking"."""

    def __init__(self, model: str, dtype: str, chat_template: str, sampling: dict, batch_size: int,
                 device: str | None = None, model_label: str | None = None, trust_remote_code: bool = False,
                 budgets: dict | None = None):

        from prunelab.generation.hf import HFBackend
        from prunelab.models import load_model
        from prunelab.models.templates import apply_template

        device = device_name(device)
        loaded, tokenizer = load_model(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
        self.backend = HFBackend(loaded, apply_template(tokenizer, chat_template), batch_size=batch_size)
        self.sampling = sampling
        self.model_label = model_label or model
        self.budgets = budgets

    def __call__(self, batch: dict) -> dict:
        ids = [str(x) for x in batch["id"]]
        order = sorted(range(len(ids)), key=lambda i: ids[i])
        s = self.sampling
        budgets = Budgets(**self.budgets) if self.budgets else None
        sampling = Sampling(max_new_tokens=budgets.total if budgets else s["max_new_tokens"],
                            temperature=s["temperature"], top_p=s["top_p"], seed=int(s.get("seed", 0)),
                            reasoning=budgets)
        opens = batch.get("opens_reasoning", [False] * len(ids))
        requests = [GenerationRequest(ids[i], "", tuple(int(t) for t in batch["prompt_ids"][i]),
                                      opens_reasoning=bool(opens[i])) for i in order]
        generations = self.backend.generate(requests, sampling)
        rows = []
        for i, g in zip(order, generations):
            rows.append({
                "id": ids[i], "shard": int(batch["shard"][i]), "messages": str(batch["messages"][i]),
                "reference": _optional(batch["reference"][i]), "response": g.text,
                "finish_reason": g.finish_reason, "prompt_tokens": g.prompt_tokens, "output_tokens": g.output_tokens,
                "model": self.model_label, "temperature": float(s["temperature"]), "top_p": float(s["top_p"]),
                "max_new_tokens": int(s["max_new_tokens"]),
                "seed": int(batch["seed"][i]) if s["temperature"] > 0 else 0,
                "dropped": drop_reason(g.finish_reason, g.text, g.cut_in_thinking),
                **reasoning_columns(g.reasoning, g.thinking_tokens, g.cut_in_thinking, budgets),
            })
        return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}


def _optional(value):
    """A nullable string column as it comes out of Arrow, pandas or numpy (None, NaN) -> str | None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value)
