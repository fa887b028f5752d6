"""Ray job entrypoint: inference cost of the base model and pruned checkpoints (see `prunelab cost`). On a cluster
each model is measured, one at a time in a process of its own, in a Ray task sized like one of `ray.actors` (the node
with the GPU it asks for; checkpoints on storage that node mounts); with no cluster, on this machine.

    python jobs/cost.py configs/cost/qwen-bi25.yaml                                        # laptop
    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml \\
        -- python jobs/cost.py configs/cost/qwen-bi25.yaml base_model.name=meta-llama/Llama-3.1-8B-Instruct \\
           'models=[{name: /data/pruned/llama-bi25}]' ray.actors.num_gpus=1 output_dir=/data/runs/llama-cost

Set RAY_ADDRESS=http://HEAD:8265 (and RAY_AUTH_MODE=token with the cluster's token) for `ray job submit`.
Resubmitting measures only checkpoints that changed or are new.
"""

import sys

from prunelab.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main(__file__, sys.argv[1:]))  # the stage is this file's name (prunelab.stages.registry)
