"""Ray job entrypoint: a single-layer ablation sweep on the cluster the job runs in (see `prunelab sweep`). The
driver plans and stores; actors sized by the config's `ray.actors` (num_cpus, num_gpus, accelerator_type) compute.

    python jobs/sweep.py configs/sweep/default.yaml                                   # laptop: a local Ray
    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml \\
        -- python jobs/sweep.py configs/sweep/llama-3.1-8b-instruct.yaml output_dir=/data/runs/llama-sweep \\
           ray.actors.num_actors=8 ray.actors.num_gpus=1 ray.actors.accelerator_type=A100

Set RAY_ADDRESS=http://HEAD:8265 (and RAY_AUTH_MODE=token with the cluster's token) for `ray job submit`; inside
the job RAY_ADDRESS is set for the driver. KubeRay: `kubectl apply -f cluster/kuberay-rayjob.yaml`. Resubmitting
the same command resumes: finished work is read back from `output_dir`, which must be storage the driver keeps.
"""

import sys

from prunelab.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main(__file__, sys.argv[1:]))  # the stage is this file's name (prunelab.stages.registry)
