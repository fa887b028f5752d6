"""`prunelab submit`: a stage as a Ray job on a cluster (`jobs/<stage>.py` through Ray's job API), checked first
where `ray job submit` fails late or not at all: a dashboard that does not answer, a token the cluster refuses, a
working directory over Ray's upload limit (Ray zips all of it before it says so), and a config that does not
validate. Each is a clear error within seconds, before anything is uploaded.
"""

import asyncio
import contextlib
import logging
import shlex
import time
from pathlib import Path
from urllib.parse import urlparse

import yaml

from prunelab.distributed import ClusterUnreachable, _check_reachable
from prunelab.errors import ConfigError
from prunelab.stages.registry import JOB_COMMANDS, job_file

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def upload_limit() -> int:
    """Ray's limit on a zipped working directory (its gRPC message size)."""
    try:
        from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE

        return int(GCS_STORAGE_MAX_SIZE)
    except ImportError:  # moved in a later Ray: its documented default
        return 512 * 2**20


def upload_files(working_dir: Path, excludes: list[str]) -> dict[Path, int]:
    """The files Ray would upload from `working_dir` (the same walk: .gitignore, .rayignore and `excludes`), with
    their sizes. Only stats files: seconds even for gigabytes."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    sizes: dict[Path, int] = {}

    def add(path: Path) -> None:
        if path.is_file() and not path.is_symlink():
            sizes[path] = path.stat().st_size

    _dir_travel(working_dir, [_get_excludes(working_dir, excludes)], add, include_gitignore=True)
    return sizes


def check_upload(working_dir: Path, excludes: list[str], limit: int | None = None) -> int:
    """Raises when the working directory is bigger than Ray accepts, naming its largest entries."""
    limit = limit or upload_limit()
    sizes = upload_files(working_dir, excludes)
    total = sum(sizes.values())
    if total <= limit:
        return total
    tops: dict[str, int] = {}
    for path, size in sizes.items():
        top = path.relative_to(working_dir).parts[0]
        tops[top] = tops.get(top, 0) + size
    largest = sorted(tops.items(), key=lambda kv: -kv[1])[:5]
    listing = ", ".join(f"{name} ({size / 2**20:.0f} MiB)" for name, size in largest)
    raise ConfigError(f"the working directory {working_dir} holds {total / 2**20:.0f} MiB to upload (before "
                      f"compression), over Ray's limit of {limit / 2**20:.0f} MiB. Largest: {listing}. Leave them out "
                      "with .gitignore, .rayignore or the runtime env's `excludes`, or put them on shared storage.")


@contextlib.contextmanager
def _quiet_packaging():
    """Ray logs "Ignoring upload to cluster for these files: [.gitignore]" for every directory of the walk that
    holds an ignore file (15 lines for this repository, with its virtualenvs); `submit` says once what it uploads."""
    logger = logging.getLogger("ray._private.runtime_env.packaging")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _validate(stage: str, args: list[str]) -> None:
    """A stage's `CONFIG [a.b=value ...]` validated here, as the job would, before the upload."""
    from prunelab.config import load_config

    values = [a for a in args if not a.startswith("--")]
    if stage in JOB_COMMANDS or not values or not values[0].endswith((".yaml", ".yml")):
        return
    if not Path(values[0]).exists():
        raise ConfigError(f"config {values[0]!r} not found (paths are relative to the working directory, which is "
                          "what the job sees)")
    if all("=" in v for v in values[1:]):
        load_config(values[0], values[1:])


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:
        text = str(exc)
        if "401" in text or "403" in text or "uthenticat" in text:
            raise ClusterUnreachable(
                f"the cluster at {address} refused this client: {text.splitlines()[0]}. It runs with token "
                "authentication: export RAY_AUTH_MODE=token and give its token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH "
                "or ~/.ray/auth_token)") from None
        raise ClusterUnreachable(f"no Ray job API answers at {address}: {text.splitlines()[0]}") from None


def runtime_env_of(path: str | None = "cluster/runtime_env.yaml", env_vars: dict[str, str] | None = None,
                   root: Path | None = None) -> dict:
    """The jobs' runtime env (`path`, relative to `root`, default: here) with `env_vars` added to its own. Plain
    `ray job submit` takes either `--runtime-env FILE` or `--runtime-env-json`, not both: `prunelab runtime-env --env
    HF_TOKEN` prints this as the JSON of the second, so a secret reaches the job without being written anywhere."""
    file = (root or Path.cwd()) / path if path else None
    if file is not None and not file.exists():
        raise ConfigError(f"runtime env {str(file)!r} not found (run from the prunelab repository)")
    env = (yaml.safe_load(file.read_text()) if file else None) or {}
    if env_vars:
        env["env_vars"] = {**env.get("env_vars", {}), **env_vars}
    return env


def submit(stage: str, args: list[str], address: str, working_dir: str = ".",
           runtime_env: str | None = "cluster/runtime_env.yaml", entrypoint_num_gpus: float = 0,
           submission_id: str | None = None, wait: bool = True,
           env_vars: dict[str, str] | None = None) -> tuple[str, str | None]:
    """Submits `python jobs/<stage>.py ARGS` from `working_dir`, with `env_vars` added to the runtime env's; returns
    (job id, final status or None with wait=False). While waiting, the job's logs are printed as they come."""
    root = Path(working_dir).resolve()
    job = job_file(stage)
    if not (root / job).exists():
        raise ConfigError(f"{root / job} not found: run from the prunelab repository, or give --working-dir")
    env = {**runtime_env_of(runtime_env, env_vars, root), "working_dir": str(root)}
    parsed = urlparse(address)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ClusterUnreachable(f"--address {address!r}: the job API is the dashboard's URL, http://HEAD:8265")
    _check_reachable(f"{parsed.hostname}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}", "--address")
    with _quiet_packaging():
        size = check_upload(root, list(env.get("excludes", [])))
    _validate(stage, args)
    client = _client(address)
    print(f"uploading {root} ({size / 2**20:.1f} MiB before compression; .gitignore, .rayignore and the runtime "
          "env's excludes left out)", flush=True)
    with _quiet_packaging():
        job_id = client.submit_job(entrypoint=shlex.join(["python", str(job), *args]), runtime_env=env,
                                   submission_id=submission_id, entrypoint_num_gpus=entrypoint_num_gpus or None)
    print(f"submitted {job_id} to {address}", flush=True)
    if not wait:
        return job_id, None
    asyncio.run(_print_logs(client, job_id))
    status = str(client.get_job_status(job_id).value)
    while status not in TERMINAL:  # the log stream can end a moment before the status does
        time.sleep(1)
        status = str(client.get_job_status(job_id).value)
    print(f"job {job_id}: {status}", flush=True)
    return job_id, status


async def _print_logs(client, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)


__all__ = ["check_upload", "runtime_env_of", "submit", "upload_files", "upload_limit"]
