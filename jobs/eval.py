"""Ray job entrypoint: score a model (a pruned or recovered checkpoint) and its retention against the base model
(see `prunelab eval`). Evaluation runs in the job's driver, so on a cluster ask for the driver's GPU at submission.

    python jobs/eval.py configs/eval/qwen-bi25.yaml                                    # laptop
    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml --entrypoint-num-gpus 1 \\
        -- python jobs/eval.py configs/eval/qwen-bi25.yaml model.name=/data/pruned/llama-bi25 \\
           base_model.name=meta-llama/Llama-3.1-8B-Instruct output_dir=/data/runs/eval-llama-bi25
"""

import sys

from prunelab.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
