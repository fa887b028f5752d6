"""Ray job entrypoint: Self-Generated Responses on the cluster the job runs in (see `prunelab sgr`).

    python jobs/sgr.py configs/sgr/qwen-sharegpt.yaml                                 # laptop: a local Ray
    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml \\
        -- python jobs/sgr.py configs/sgr/llama-3.1-8b-instruct-vllm.yaml engine.replicas=8 \\
           output_dir=/data/runs/sgr-llama

On a multi-node cluster `output_dir` must be storage the driver writes (the driver writes every shard; actors only
generate). Resubmitting the same command skips finished shards.
"""

import sys

from prunelab.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main(__file__, sys.argv[1:]))  # the stage is this file's name (prunelab.stages.registry)
