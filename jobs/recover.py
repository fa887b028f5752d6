"""Ray job entrypoint: recovery fine-tuning on Ray Train (see `prunelab recover`).

    python jobs/recover.py configs/recover/qwen-bi25-sgr.yaml                         # laptop: a local Ray
    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml \\
        -- python jobs/recover.py configs/recover/qwen-bi25-sgr.yaml workers.num_workers=4 workers.use_gpu=true \\
           workers.accelerator_type=A100 workers.storage_path=/data/train output_dir=/data/runs/recover-sgr

Every worker reads the corpus and the pruned model from their paths, so on a multi-node cluster both (and
`workers.storage_path`, where Ray Train keeps checkpoints) must be shared storage. Resubmitting the same command
resumes from the last checkpoint.
"""

import sys

from prunelab.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main(__file__, sys.argv[1:]))  # the stage is this file's name (prunelab.stages.registry)
