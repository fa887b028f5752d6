"""Ray job entrypoint: a single-layer ablation sweep on the cluster the job runs in.

    # on a laptop (starts a local Ray):
    python jobs/sweep.py configs/sweep/default.yaml
    # on a cluster (Ray 2.60 job submission needs the token: RAY_AUTH_MODE=token, see README):
    ray job submit --address http://HEAD:8265 --runtime-env cluster/runtime_env.yaml --working-dir . \
        -- python jobs/sweep.py configs/sweep/llama-3.1-8b-instruct.yaml ray.actors.num_actors=8
    # KubeRay: kubectl apply -f cluster/kuberay-rayjob.yaml

Arguments are those of `prunelab sweep` (config path, then `a.b=value` overrides). Inside a job, RAY_ADDRESS is set
and the driver attaches to the cluster; actors are placed by their num_cpus / num_gpus from the config.
"""

import sys

from prunelab.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
