"""Ray job entrypoint: retention by pruning strategy x ratio (see `prunelab compare-strategies`).

    ray job submit --address http://HEAD:8265 --runtime-env cluster/runtime_env.yaml --working-dir . \\
        -- python jobs/compare_strategies.py configs/compare/qwen-strategies.yaml model.name=meta-llama/Llama-3.1-8B-Instruct
"""

import sys

from prunelab.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare-strategies", *sys.argv[1:]]))
