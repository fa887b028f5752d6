"""prunelab against a Ray head started as a user starts one (`ray start --head`, token authentication on): a sweep
submitted with `ray job submit` through `jobs/`, and drivers of a sweep, an SGR run and a training run killed
(SIGKILL) mid-run and rerun with the same command, each resuming without recomputing anything it had finished.

The head runs as `ray start --head --block` and is stopped by SIGTERM to that command, which shuts down exactly the
processes it started (`ray stop` would stop every Ray instance on the machine)."""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from prunelab.config import SGRConfig, parse_config
from prunelab.execution.run import InProcessExecutor
from prunelab.stages.sgr import generate_corpus
from prunelab.stages.sweep import run_sweep

ROOT = Path(__file__).resolve().parent.parent
DRIVER = str(Path(__file__).parent / "driver.py")
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


@dataclass
class Head:
    gcs: str  # what drivers attach to
    dashboard: str  # the job API
    env: dict  # a client's environment: RAY_AUTH_MODE=token and the token's path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(check, timeout_s: float, what: str, proc=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode} first")
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s} s")


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A token-authenticated head with 2 CPUs, its token in a file of its own (as `ray get-auth-token --generate`
    writes ~/.ray/auth_token). Jobs' `python` is this virtual environment's: it is first on the head's PATH."""
    root = tmp_path_factory.mktemp("head")
    token = root / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), PATH=f"{BIN}{os.pathsep}{env['PATH']}",
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")  # draining on SIGTERM is for Serve; it waits 30 s here
    gcs_port, dashboard_port = _free_port(), _free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
    log = open(root / "head.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs_port}", "--num-cpus=2",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", f"--temp-dir={temp_dir}",
         # the agent that runs jobs listens on 52365 by default: taken by any other Ray on this machine
         f"--dashboard-agent-listen-port={_free_port()}",
         "--disable-usage-stats"], env=env, stdout=log, stderr=subprocess.STDOUT)
    dashboard = f"http://127.0.0.1:{dashboard_port}"

    def jobs_are_accepted():
        # the job API answers before the node's agent that runs jobs is up ("No available agent to submit job"):
        # wait until a trivial job goes in
        submitted = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", dashboard, "--no-wait", "--",
                                    "true"], env=env, capture_output=True, timeout=60)
        return submitted.returncode == 0

    try:
        _wait_for(jobs_are_accepted, 180, f"the head's job API at {dashboard} (log: {root / 'head.log'})", proc)
        yield Head(gcs=f"127.0.0.1:{gcs_port}", dashboard=dashboard, env=env)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def sweep_config(model_dir, out) -> dict:
    return {"kind": "sweep", "name": "jobs", "model": {"name": str(model_dir), "dtype": "float32"},
            "tasks": [{"name": "arithmetic", "limit": 24}], "sweep": {"batch_tokens": 768},
            "ray": {"actors": {"num_actors": 2, "num_cpus": 1}}, "output_dir": str(out)}


def write_yaml(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_sweep_submitted_with_ray_job_submit_succeeds_and_needs_the_token(head, tiny_model_dir, tmp_path):
    model = tiny_model_dir("llama")
    reference = parse_config(sweep_config(model, tmp_path / "in-process"))
    run_sweep(reference, InProcessExecutor(), progress=False)

    out = tmp_path / "submitted"
    config = write_yaml(tmp_path / "sweep.yaml", sweep_config(model, tmp_path / "unused"))
    submit = [str(BIN / "ray"), "job", "submit", "--address", head.dashboard, "--working-dir", ".",
              "--runtime-env", "cluster/runtime_env.yaml", "--", "python", "jobs/sweep.py", config,
              f"output_dir={out}", "--no-progress"]
    done = subprocess.run(submit, cwd=ROOT, env=head.env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout.lower(), done.stdout
    want = pd.read_csv(tmp_path / "in-process" / "retention.csv", index_col=0)
    got = pd.read_csv(out / "retention.csv", index_col=0)
    pd.testing.assert_frame_equal(got, want, rtol=1e-4)  # the job's actors computed what this process computes
    assert json.loads((out / "meta.json").read_text())["stage"] == "sweep"

    # without the token the job API refuses the client, and prunelab submit says what to do, before uploading
    no_token = {k: v for k, v in head.env.items() if k != "RAY_AUTH_TOKEN_PATH"} | {"HOME": str(tmp_path)}
    refused = subprocess.run(submit, cwd=ROOT, env=no_token, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "token" in (refused.stdout + refused.stderr).lower()
    ours = subprocess.run([str(BIN / "prunelab"), "submit", "--address", head.dashboard, "sweep", config],
                          cwd=ROOT, env=no_token, capture_output=True, text=True, timeout=120)
    assert ours.returncode == 2
    assert "RAY_AUTH_MODE=token" in ours.stderr and "RAY_AUTH_TOKEN_PATH" in ours.stderr


def run_driver(head, args, log: Path, delay_s: float = 0, kill_when=None, timeout_s: float = 600):
    """Runs tests/driver.py attached to the head. With `kill_when(log lines)`, SIGKILLs the driver as soon as it
    holds (as a crash or a lost driver node would) and returns None; else waits and returns the exit code."""
    env = {**head.env, "PRUNELAB_TEST_LOG": str(log), "PRUNELAB_TEST_DELAY_S": str(delay_s),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, DRIVER, *args, "--address", head.gcs, "--no-progress"], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if kill_when is None:
        out, _ = proc.communicate(timeout=timeout_s)
        assert proc.returncode == 0, out
        return proc.returncode

    def reached():
        return log.exists() and kill_when(log.read_text().splitlines())

    try:
        _wait_for(reached, timeout_s, f"driver {args[0]} reaching the kill point", proc)
    except AssertionError:
        proc.kill()
        raise AssertionError(proc.communicate()[0]) from None
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return None


def snapshot(directory: Path, pattern: str) -> dict[str, tuple[int, int]]:
    """Every matching file's (inode, mtime): a file rewritten by a rerun changes both (atomic writes replace it)."""
    return {str(p.relative_to(directory)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(directory.glob(pattern))}


def test_a_killed_sweep_driver_resumes_without_recomputing(head, tiny_model_dir, tmp_path):
    model = tiny_model_dir("llama", 6)
    reference = parse_config(sweep_config(model, tmp_path / "in-process"))
    run_sweep(reference, InProcessExecutor(), progress=False)
    out = tmp_path / "sweep"
    config = write_yaml(tmp_path / "sweep.yaml", sweep_config(model, out))

    first, second = tmp_path / "first.log", tmp_path / "second.log"
    run_driver(head, ["sweep", config], first, delay_s=2, kill_when=lambda lines: len(lines) >= 2)
    before = snapshot(out, "results/**/*.parquet")
    written = set(first.read_text().splitlines())
    assert 2 <= len(written) < 7 and len(before) == len(written)  # killed mid-sweep, with results stored

    run_driver(head, ["sweep", config], second)
    rerun = set(second.read_text().splitlines())
    assert not rerun & written  # nothing finished was computed again
    assert rerun | written == {"result arithmetic base"} | {f"result arithmetic drop-{i}" for i in range(6)}
    after = snapshot(out, "results/**/*.parquet")
    assert {k: after[k] for k in before} == before  # and nothing stored was rewritten
    want = pd.read_csv(tmp_path / "in-process" / "retention.csv", index_col=0)
    pd.testing.assert_frame_equal(pd.read_csv(out / "retention.csv", index_col=0), want, rtol=1e-4)


def sgr_config(model_dir, prompts: Path, out: Path) -> dict:
    return {"kind": "sgr", "name": "jobs", "model": {"name": str(model_dir), "dtype": "float32"},
            "chat_template": "plain",
            "prompts": {"source": str(prompts), "limit": None, "exclude_tasks": [], "max_prompt_tokens": 128},
            "sampling": {"max_new_tokens": 6},
            "engine": {"backend": "hf", "replicas": 1, "num_cpus": 1, "batch_size": 4, "shard_size": 4},
            "output_dir": str(out)}


def write_prompts(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"instruction": f"What is {i} + {i}?", "output": f"It is {2 * i}."}) + "\n"
                            for i in range(n)))
    return path


def test_a_killed_sgr_driver_resumes_without_regenerating_finished_shards(head, tiny_model_dir, tmp_path):
    model, prompts = tiny_model_dir("llama"), write_prompts(tmp_path / "prompts.jsonl", 24)
    reference = generate_corpus(parse_config(sgr_config(model, prompts, tmp_path / "in-process"), cls=SGRConfig),
                                progress=False)
    out = tmp_path / "corpus"
    config = write_yaml(tmp_path / "sgr.yaml", sgr_config(model, prompts, out))

    first, second = tmp_path / "first.log", tmp_path / "second.log"
    run_driver(head, ["sgr", config], first, delay_s=3, kill_when=lambda lines: len(lines) >= 2)
    written = set(first.read_text().splitlines())
    before = snapshot(out, "shards/*.parquet")
    assert 2 <= len(written) < 6 and len(before) == len(written)

    run_driver(head, ["sgr", config], second)
    rerun = set(second.read_text().splitlines())
    assert not rerun & written and rerun | written == {f"shard {k}" for k in range(6)}
    after = snapshot(out, "shards/*.parquet")
    assert {k: after[k] for k in before} == before
    got = pd.read_parquet(out / "shards").sort_values("id").reset_index(drop=True)
    want = pd.read_parquet(reference / "shards").sort_values("id").reset_index(drop=True)
    assert len(got) == 24 and not got["id"].duplicated().any()  # every prompt answered once
    assert got["response"].tolist() == want["response"].tolist()  # greedy: what this process generates
    assert json.loads((out / "meta.json").read_text())["complete"] is True


def test_a_killed_training_driver_resumes_from_its_last_checkpoint(head, tiny_model_dir, tmp_path):
    from test_recover import make_lineage

    (tmp_path / "lineage").mkdir()
    _, pruned, corpus = make_lineage(tmp_path / "lineage", tiny_model_dir("llama"))
    out = tmp_path / "recover"
    config = write_yaml(tmp_path / "recover.yaml", {
        "kind": "recover", "name": "jobs", "model": {"name": str(pruned), "dtype": "float32"},
        "corpus": str(corpus), "responses": "reference", "output_dir": str(out),
        "training": {"max_steps": 6, "save_steps": 2, "batch_size": 4, "per_device_batch_size": 2,
                     "max_length": 128, "warmup_steps": 0},
        "workers": {"num_workers": 1, "cpus_per_worker": 1, "max_failures": 0}})

    log = tmp_path / "steps.log"
    # step 4 is logged 3 s after step 2's checkpoint was reported: time for Ray Train's controller to register it
    run_driver(head, ["recover", config], log, delay_s=3, kill_when=lambda lines: "step 4" in lines)
    first = log.read_text().splitlines()
    assert first[0] == "start 0" and "step 6" not in first
    assert not (out / "merged").exists()

    run_driver(head, ["recover", config], log)
    lines = log.read_text().splitlines()
    starts = [int(x.split()[1]) for x in lines if x.startswith("start")]
    assert len(starts) == 2 and starts[1] >= 2  # the rerun began from a checkpoint the killed run saved
    rerun_steps = [int(x.split()[1]) for x in lines[len(first):] if x.startswith("step")]
    assert rerun_steps == list(range(starts[1] + 1, 7))  # only the steps after it, once each
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] and meta["training"]["steps"] == 6
    assert (out / "merged" / "config.json").exists()
    # Ray Train's checkpoints and their copy only served the resume: gone once the run has finished
    assert not (out / "train").exists() and not (out / "final-checkpoint").exists()


def test_a_local_run_stays_local_beside_a_head_started_with_ray_start(head):
    """With no address, Ray's own lookup attaches to the last head `ray start` recorded on this machine
    (`<temp>/ray/ray_current_cluster`); a prunelab run without an address starts a Ray of its own instead."""
    temp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # Ray's socket paths must stay short
    try:
        (temp / "ray").mkdir()
        (temp / "ray" / "ray_current_cluster").write_text(head.gcs)  # what `ray start` leaves for later drivers
        code = ("import ray\nfrom prunelab.distributed import connect\nconnect(None)\n"
                "print('GCS', ray.get_runtime_context().gcs_address)\nray.shutdown()\n")
        env = {**head.env, "RAY_TMPDIR": str(temp)}
        env.pop("RAY_ADDRESS", None)
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=180)
        # Ray writes the head's address with this machine's IP for 127.0.0.1: the port tells the two apart
        ports = [line.rsplit(":", 1)[1] for line in out.stdout.splitlines() if line.startswith("GCS ")]
        assert ports and ports[0] != head.gcs.rsplit(":", 1)[1], out.stdout + out.stderr
    finally:
        shutil.rmtree(temp, ignore_errors=True)
