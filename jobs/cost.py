"""Ray job entrypoint: inference cost of the base model and pruned checkpoints (see `prunelab cost`). It runs in the
driver (one model at a time in a process of its own): give the driver the GPU the engines would use.

    python jobs/cost.py configs/cost/qwen-bi25.yaml                                        # laptop
    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml --entrypoint-num-gpus 1 \\
        -- python jobs/cost.py configs/cost/qwen-bi25.yaml base_model.name=meta-llama/Llama-3.1-8B-Instruct \\
           'models=[{name: /data/pruned/llama-bi25}]' output_dir=/data/runs/llama-cost

Set RAY_ADDRESS=http://HEAD:8265 (and RAY_AUTH_MODE=token with the cluster's token) for `ray job submit`.
Resubmitting measures only checkpoints that changed or are new.
"""

import sys

from prunelab.cli import main

if __name__ == "__main__":
    sys.exit(main(["cost", *sys.argv[1:]]))
