"""A test's own Ray instance: one that an earlier test's CLI run left up in this process (prunelab starts a local
Ray on first use and keeps it for the next stage) is shut down first, so a test does not depend on the order it
runs in (`ray.init` refuses a second instance: "Maybe you called ray.init twice"). It is always a new local
instance (`address="local"`, as prunelab's own stages start one), never a cluster that `ray start` left on the
machine, running or not: `ray.init()` alone would join the one /tmp/ray/ray_current_cluster names, and refuse the
test's resources for it."""


def start_ray(**kwargs):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    return ray.init(**{"address": "local", **kwargs})
