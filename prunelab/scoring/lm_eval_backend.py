"""Classification scored by lm-eval itself: its HF backend (`HFLM`) computes the log-likelihoods of prunelab's
requests on the in-memory model, through lm-eval's own batching, padding and log-softmax code.

The requests are already tokenized exactly as lm-eval tokenizes them (`prunelab.scoring.requests`), so this hands
lm-eval the token ids its `loglikelihood` would build and skips only its string handling. A reference to check the
fast engine against, and a fallback; it is slower (no shared prefixes or contexts, full logits everywhere).
"""

from collections.abc import Sequence

from prunelab.errors import ConfigError
from prunelab.scoring.requests import Request, Scores


class LMEvalScorer:
    def __init__(self, model, tokenizer, batch_size: int = 8):
        try:
            from lm_eval.models.huggingface import HFLM
        except ImportError:
            raise ConfigError("backend 'lm-eval' needs lm-eval: pip install 'prunelab[eval]'") from None
        device = str(next(model.parameters()).device)
        self.tokenizer = tokenizer
        self.lm = HFLM(pretrained=model, tokenizer=tokenizer, device=device, batch_size=batch_size)

    def score(self, requests: Sequence[Request], removed: Sequence[int] = ()) -> list[Scores]:
        if removed:
            raise ConfigError("backend 'lm-eval' scores the model as loaded; remove layers first (prunelab drop)")
        flat = []
        for r in requests:
            context_text = self.tokenizer.decode(r.context)  # only a cache key for lm-eval
            for c in r.continuations:
                flat.append(((context_text, self.tokenizer.decode(c)), list(r.context), list(c)))
        results = iter(self.lm._loglikelihood_tokens(flat, disable_tqdm=True))
        out = []
        for r in requests:
            pairs = [next(results) for _ in r.continuations]
            out.append(Scores(tuple(float(lp) for lp, _ in pairs), tuple(bool(g) for _, g in pairs)))
        return out
