"""prunelab: depth (layer) pruning of LLMs, end to end, on Ray or in one process."""

import logging

# Library lines that say nothing a user can act on, silenced at their source (their loggers), in the driver and in
# every worker that imports prunelab. bitsandbytes, imported by peft, warns on every CPU with AVX512-BF16 that it
# cannot fetch an optional 4-bit kernel from the hub (publisher trust): LoRA never uses it, and QLoRA on a CPU runs
# bitsandbytes' own kernel instead. Offline (HF_HUB_OFFLINE=1), the `kernels` package says instead, for the same
# kernel, that it skips the publisher check.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
logging.getLogger("kernels._internals.hf_hub").setLevel(logging.ERROR)
