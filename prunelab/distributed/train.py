"""Recovery on Ray Train (Train V2): TRL's SFTTrainer inside a `TorchTrainer`, one data-parallel worker per device.

Each worker reports its Hugging Face checkpoints to Ray Train (`RayTrainReportCallback`). A worker that dies makes
Ray Train restart the group from the last checkpoint (`max_failures`); a driver that dies resumes the same way when
the stage is rerun, since the run's name and storage are fixed by the output directory and the config's identity.
"""

import os
import shutil
from pathlib import Path

from prunelab.distributed.resources import HIDE_GPUS, check_gpu_node, require, resource_request, uses_gpu
from prunelab.recovery.run import FINAL_CHECKPOINT, TrainJob


def _train_loop(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch
    from ray.train.huggingface.transformers import RayTrainReportCallback

    from prunelab.recovery.run import train

    job = TrainJob(**loop_config["job"])
    context = ray.train.get_context()
    output_dir = Path(loop_config["scratch"]) / f"rank-{context.get_world_rank()}"
    checkpoint = ray.train.get_checkpoint()
    callbacks = [RayTrainReportCallback(), *loop_config.get("callbacks", ())]
    if checkpoint is None:
        train(job, ray.train.torch.get_device(), context.get_world_size(), output_dir, None, callbacks)
        return
    with checkpoint.as_directory() as d:
        resume = os.path.join(d, RayTrainReportCallback.CHECKPOINT_NAME)
        train(job, ray.train.torch.get_device(), context.get_world_size(), output_dir, resume, callbacks)


def like_a_worker(workers, fn, *args):
    """`fn(*args)` in a Ray task with one training worker's resources (`workers`: its CPUs, a GPU of its accelerator
    type where training uses GPUs): what needs a worker's memory (the adapter merge) runs where a worker ran."""
    import ray

    use_gpu = uses_gpu(workers.use_gpu, "Ray Train workers", "workers.use_gpu", workers.accelerator_type)
    task = ray.remote(fn).options(num_cpus=workers.cpus_per_worker, num_gpus=1 if use_gpu else 0,
                                  accelerator_type=workers.accelerator_type, max_retries=0,
                                  runtime_env=None if use_gpu else HIDE_GPUS)
    return ray.get(task.remote(*args))


def train_on_ray(job: TrainJob, workers, out: Path, callbacks=()) -> Path:
    """Runs (or resumes) `job` on `workers.num_workers` Ray Train workers; copies the final Hugging Face checkpoint to
    `out/final-checkpoint` (recovery.run.FINAL_CHECKPOINT) and returns it. `callbacks`: extra transformers callbacks (picklable) for every worker."""
    import tempfile

    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    use_gpu = uses_gpu(workers.use_gpu, "Ray Train workers", "workers.use_gpu", workers.accelerator_type)
    require(resource_request(workers.cpus_per_worker, 1 if use_gpu else 0, workers.accelerator_type),
            "Ray Train workers", "workers.cpus_per_worker / use_gpu / accelerator_type")
    if use_gpu:
        check_gpu_node("Ray Train workers", workers.accelerator_type)
    scaling = ScalingConfig(num_workers=workers.num_workers, use_gpu=use_gpu,
                            resources_per_worker={"CPU": workers.cpus_per_worker},
                            accelerator_type=workers.accelerator_type)
    # Ray Train routes print(file=None) of its workers to its logger, past a redirected sys.stdout: dill (datasets'
    # fingerprints) captures dis.dis's output that way, so every bytecode disassembly landed in the job's log
    run = RunConfig(name=job.run_name, storage_path=job.storage_path,
                    failure_config=FailureConfig(max_failures=workers.max_failures),
                    checkpoint_config=CheckpointConfig(num_to_keep=2),
                    worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
                                                     **({} if use_gpu else HIDE_GPUS["env_vars"])}})
    scratch = tempfile.mkdtemp(prefix=f"prunelab-{job.run_name}-")
    trainer = TorchTrainer(_train_loop, train_loop_config={"job": job.to_dict(), "scratch": scratch,
                                                           "callbacks": list(callbacks)},
                           scaling_config=scaling, run_config=run)
    try:
        result = trainer.fit()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    final = out / FINAL_CHECKPOINT
    with result.checkpoint.as_directory() as d:
        tmp = out / f".{FINAL_CHECKPOINT}-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(Path(d) / "checkpoint", tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    return final
