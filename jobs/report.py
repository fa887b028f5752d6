"""Ray job entrypoint: re-render a finished artifact directory's report, or combine several eval (or recover)
directories into one table (or one plot) (see `prunelab report`). CPU only; runs in the driver.

    python jobs/report.py runs/qwen2.5-coder-0.5b-sweep                               # laptop
    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml \\
        -- python jobs/report.py /data/runs/eval-pruned /data/runs/eval-sgr --out /data/runs/compare \\
           --labels pruned,sgr
"""

import sys

from prunelab.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main(__file__, sys.argv[1:]))  # the stage is this file's name (prunelab.stages.registry)
