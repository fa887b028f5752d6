"""Ray job entrypoint: choose layers with a strategy, remove them, export a pruned checkpoint (see `prunelab prune`).
Scoring strategies (block influence, angular, reverse) run in the driver: on a cluster ask for its GPU at
submission. The iterative strategy evaluates its candidates on Ray actors sized by the config's `ray` section.

    python jobs/prune.py configs/prune/qwen-block-influence.yaml                      # laptop
    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml --entrypoint-num-gpus 1 \\
        -- python jobs/prune.py configs/prune/qwen-block-influence.yaml \\
           model.name=meta-llama/Llama-3.1-8B-Instruct output_dir=/data/pruned/llama-bi25
"""

import sys

from prunelab.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main(__file__, sys.argv[1:]))  # the stage is this file's name (prunelab.stages.registry)
