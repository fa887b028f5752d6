"""Ray job entrypoint: the whole pipeline from one config (see `prunelab pipeline`): base evaluation, single-layer
sweep, strategies x ratios, SGR, recovery on SGR and on the corpus's original answers, evaluation of the pruned and
recovered models, and the report. Each stage is an artifact directory keyed by a hash of its inputs: resubmitting
the same command reuses every finished stage and computes only what changed.

    python jobs/pipeline.py configs/repro/qwen-coder.yaml                              # laptop: a local Ray
    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml \\
        -- python jobs/pipeline.py configs/repro/qwen-coder.yaml output_dir=/data/runs/qwen-pipeline \\
           ray.actors.num_actors=8 ray.actors.num_gpus=1 sgr.engine.backend=vllm recover.workers.use_gpu=true

Set RAY_ADDRESS=http://HEAD:8265 (and RAY_AUTH_MODE=token with the cluster's token) for `ray job submit`. The
driver writes output_dir, which must be storage the driver keeps (and, for recovery workers on other nodes,
storage every node mounts).
"""

import sys

from prunelab.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main(__file__, sys.argv[1:]))  # the stage is this file's name (prunelab.stages.registry)
