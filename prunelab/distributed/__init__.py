"""Ray lives here, and only here: actors for sweeps (`RayExecutor`), and the glue of later stages (Ray Data, Ray
Train). Library code takes an executor as an argument; only the CLI and `jobs/` call `connect`.
"""

import os


def connect(address: str | None = None) -> None:
    """Attaches to `address` (or $RAY_ADDRESS); with neither, starts a local Ray on this machine."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    # Workers import prunelab from the driver's environment; a job's runtime_env (cluster/) ships it on clusters.
    ray.init(address=address, log_to_driver=True, include_dashboard=False if address is None else None)


def ray_executor(ray_spec):
    """A `RayExecutor` sized by a config's `ray` section."""
    from prunelab.distributed.executor import RayExecutor

    a = ray_spec.actors
    return RayExecutor(num_actors=a.num_actors, num_cpus=a.num_cpus, num_gpus=a.num_gpus,
                       max_restarts=ray_spec.max_restarts, max_attempts=ray_spec.max_attempts)


__all__ = ["connect", "ray_executor"]
