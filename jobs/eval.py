"""Ray job entrypoint: score a model (a pruned or recovered checkpoint) and its retention against the base model
(see `prunelab eval`). The model and the base model are evaluated on Ray actors sized by the config's `ray.actors`.

    python jobs/eval.py configs/eval/qwen-bi25.yaml                                    # laptop: a local Ray
    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml \\
        -- python jobs/eval.py configs/eval/qwen-bi25.yaml model.name=/data/pruned/llama-bi25 \\
           base_model.name=meta-llama/Llama-3.1-8B-Instruct ray.actors.num_gpus=1 output_dir=/data/runs/eval-llama-bi25
"""

import sys

from prunelab.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main(__file__, sys.argv[1:]))  # the stage is this file's name (prunelab.stages.registry)
