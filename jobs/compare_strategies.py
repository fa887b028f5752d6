"""Ray job entrypoint: retention by pruning strategy x ratio, with intervals, table and plot (see
`prunelab compare-strategies`); candidates are evaluated on Ray actors sized by the config's `ray.actors`.

    python jobs/compare_strategies.py configs/compare/qwen-strategies.yaml             # laptop: a local Ray
    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml \\
        -- python jobs/compare_strategies.py configs/compare/qwen-strategies.yaml \\
           model.name=meta-llama/Llama-3.1-8B-Instruct ray.actors.num_gpus=1 output_dir=/data/runs/strategies
"""

import sys

from prunelab.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main(__file__, sys.argv[1:]))  # the stage is this file's name (prunelab.stages.registry)
