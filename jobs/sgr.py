"""Ray job entrypoint: Self-Generated Responses on the cluster the job runs in (see `prunelab sgr`).

    python jobs/sgr.py configs/sgr/qwen-sharegpt.yaml                                  # laptop: a local Ray
    ray job submit --address http://HEAD:8265 --runtime-env cluster/runtime_env.yaml --working-dir . \\
        -- python jobs/sgr.py configs/sgr/llama-3.1-8b-instruct-vllm.yaml engine.replicas=8

On a multi-node cluster `output_dir` must be storage the driver writes (the driver writes every shard; actors only
generate). vLLM engines need vLLM on the GPU nodes (`pip install 'prunelab[gpu]'` in the image or runtime env).
"""

import sys

from prunelab.cli import main

if __name__ == "__main__":
    sys.exit(main(["sgr", *sys.argv[1:]]))
