"""Ray lives here, and only here: actors for sweeps (`RayExecutor`), and the glue of later stages (Ray Data, Ray
Train). Library code takes an executor as an argument; only the CLI and `jobs/` call `connect`.
"""

import logging
import os
import socket

from prunelab.distributed.worker_logs import SETUP_HOOK, quiet_worker_logs
from prunelab.errors import PrunelabError

REACH_TIMEOUT_S = 5.0


class ClusterUnreachable(PrunelabError):
    """No Ray cluster answers at the address given."""


def _check_reachable(address: str, source: str) -> None:
    """Fails within seconds where `ray.init` would retry for minutes: a host:port (or ray://host:port) that does not
    accept a connection."""
    if address in ("auto", "local"):
        return
    if address.startswith(("http://", "https://")):
        raise ClusterUnreachable(
            f"{source} is {address!r}: that is a dashboard (job submission) address. Attach a driver with the GCS "
            "address (HEAD:6379) or ray://HEAD:10001, or submit the job: ray job submit --address " + address)
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterUnreachable(f"{source} is {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterUnreachable(f"no Ray cluster answers at {address} ({source}): {exc}. Is the head running "
                                 "(ray status on it), and is the port open from here?") from None


def connect(address: str | None = None) -> None:
    """Attaches to `address` (or $RAY_ADDRESS); with neither, starts a local Ray of its own on this machine, even
    where a head started with `ray start` runs here (Ray's own lookup would attach to that one). An address that
    does not answer, or a cluster that refuses this driver's token, fails within seconds."""
    import ray

    if ray.is_initialized():
        return
    source = "the configured address" if address else "$RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        _check_reachable(address, source)
    # Workers import prunelab from the driver's environment; a job's runtime_env (cluster/) ships it on clusters.
    # A local instance the stage starts (and stops) is its own: Ray's notice that it enabled token authentication on
    # it by default, "set RAY_AUTH_MODE=disabled to opt out", asks nothing of the user; silenced for that start only.
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = notice.level
    if not address:
        notice.setLevel(logging.ERROR)
    try:
        # on an instance of its own, every worker raises the loggers of Ray's that only say Ray's own state
        # (`worker_logs.quiet_worker_loggers`); an existing cluster's workers run its job's runtime env as given
        ray.init(address=address or "local", log_to_driver=True,
                 runtime_env=None if address else {"worker_process_setup_hook": SETUP_HOOK})
    except ConnectionError as exc:
        raise ClusterUnreachable(f"cannot attach to a Ray cluster at {address} ({source}): {exc}") from None
    except Exception as exc:
        if type(exc).__name__ != "AuthenticationError":
            raise
        raise ClusterUnreachable(
            f"the Ray cluster at {address} refused this driver's token: {exc}. Its nodes run with "
            "RAY_AUTH_MODE=token; give this driver the same token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
            "~/.ray/auth_token) and RAY_AUTH_MODE=token (docs/cluster.md, 'Token authentication').") from None
    finally:
        notice.setLevel(level)
    quiet_worker_logs()


def ray_executor(ray_spec):
    """A `RayExecutor` sized by a config's `ray` section."""
    from prunelab.distributed.executor import RayExecutor

    a = ray_spec.actors
    return RayExecutor(num_actors=a.num_actors, num_cpus=a.num_cpus, num_gpus=a.num_gpus,
                       accelerator_type=a.accelerator_type, max_restarts=ray_spec.max_restarts,
                       max_attempts=ray_spec.max_attempts, placement_timeout_s=ray_spec.placement_timeout_s)


def ray_runtime(address: str | None = None, progress: bool = True):
    """A stage runtime on Ray (`prunelab.stages.runtime`): actors for candidate units, Ray Data for SGR, Ray Train for
    recovery. It attaches to `address` (else a stage's `ray.address`, $RAY_ADDRESS, else a local Ray) when a stage
    first needs Ray, so a stage that computes in the driver (block influence, a finished run) starts none."""
    from prunelab.stages.runtime import Runtime, here

    def executor(ray_spec):
        connect(address or ray_spec.address)
        return ray_executor(ray_spec)

    def sgr(*args, **kwargs):
        from prunelab.distributed.sgr import ray_responses

        connect(address)
        return ray_responses(*args, **kwargs)

    def trainer(workers):
        def train(job, out):
            from prunelab.distributed.train import train_on_ray

            connect(address)
            return train_on_ray(job, workers, out)

        return train

    def measuring(ray_spec):
        """Measurements (cost) on a cluster run in a Ray task on a node with what `ray.actors` asks for; with no
        cluster they run here, on all of this machine (a local Ray task would be limited to its num_cpus)."""
        if not (address or ray_spec.address or os.environ.get("RAY_ADDRESS")):
            return here

        def place(fn, *args):
            import ray

            from prunelab.distributed.resources import HIDE_GPUS, require, resource_request

            connect(address or ray_spec.address)
            a = ray_spec.actors
            require(resource_request(a.num_cpus, a.num_gpus, a.accelerator_type), "the measuring task",
                    "ray.actors.num_cpus / num_gpus / accelerator_type")
            # a task given no GPU measures the CPU: it must not see (and time) a GPU it has not reserved
            remote = ray.remote(fn).options(num_cpus=a.num_cpus, num_gpus=a.num_gpus,
                                            accelerator_type=a.accelerator_type, max_retries=0,
                                            runtime_env=None if a.num_gpus else HIDE_GPUS)
            return ray.get(remote.remote(*args))

        return place

    def worker_task(workers):
        """Runs fn in a Ray task with one recovery worker's resources (a GPU where training has them)."""
        def place(fn, *args):
            from prunelab.distributed.train import like_a_worker

            connect(address)
            return like_a_worker(workers, fn, *args)

        return place

    return Runtime(executor=executor, sgr=sgr, trainer=trainer, measuring=measuring, worker_task=worker_task,
                   progress=progress)


__all__ = ["ClusterUnreachable", "connect", "ray_executor", "ray_runtime"]
