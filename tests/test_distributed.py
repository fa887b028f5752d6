"""Workers that may die: a sweep whose actor is SIGKILLed mid-run finishes with the retention table of an undisturbed
run, every result written once; a unit that keeps killing its worker is given up by name while the rest finishes."""

import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
from fresh_ray import start_ray

from prunelab.config import parse_config
from prunelab.execution.run import InProcessExecutor
from prunelab.execution.worker import Worker
from prunelab.results import ResultsStore, item_rows
from prunelab.stages.sweep import run_sweep

pytestmark = pytest.mark.slow
TESTS = str(Path(__file__).parent)


class CrashingWorker(Worker):
    """Dies (the whole process, as an out-of-memory kill would) whenever it scores layer 2 removed."""

    def score(self, removed):
        if tuple(removed) == (2,):
            os._exit(1)
        return super().score(removed)


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    # the actors import this module (CrashingWorker) from the tests directory
    start_ray(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": TESTS}})
    yield
    ray.shutdown()


def config(model_dir, out, **extra):
    return parse_config({"kind": "sweep", "name": "kill", "model": {"name": str(model_dir), "dtype": "float32"},
                         "tasks": [{"name": "arithmetic", "limit": 24}], "sweep": {"batch_tokens": 768},
                         "output_dir": str(out), **extra})


class KillOnFirstResult:
    """An executor around another that kills actor `pid` with SIGKILL when the first result lands (the actors are
    mid-unit then): the sweep sees only the executor it was given."""

    def __init__(self, executor, pid):
        self.executor, self.pid, self.killed = executor, pid, False

    def execute(self, worker, units, on_result):
        def first_kills(unit, candidate, result):
            if not self.killed:
                os.kill(self.pid, signal.SIGKILL)
                self.killed = True
            on_result(unit, candidate, result)

        self.executor.execute(worker, units, first_kills)

    def close(self):
        self.executor.close()


def test_sigkilled_actor_loses_nothing(ray_cluster, tiny_model_dir, tmp_path):
    from prunelab.distributed.executor import RayExecutor
    from prunelab.stages.common import worker_spec

    # wide enough that a unit (base pass + 8 candidates) takes about a second per actor
    model_dir = _wide_model(tmp_path)
    undisturbed = config(model_dir, tmp_path / "undisturbed")
    run_sweep(undisturbed, InProcessExecutor(), progress=False)

    disturbed = config(model_dir, tmp_path / "disturbed")
    executor = RayExecutor(num_actors=2, num_cpus=1)
    spec = worker_spec(disturbed.model, disturbed.sweep.batch_tokens, disturbed.generation, sweep=disturbed.sweep)
    pid = executor.pids(spec)[0]  # the pool run_sweep will use (same spec)
    killing = KillOnFirstResult(executor, pid)
    try:
        run_sweep(disturbed, killing, progress=False)
    finally:
        executor.close()
    assert killing.killed and executor.resubmitted >= 1
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the killed process is gone; its restarted self or the other actor did its work

    rows = ResultsStore(disturbed.output_dir).read().to_pandas()
    assert not rows.duplicated(["task", "candidate", "item_id", "metric"]).any()  # every result written once
    assert len(rows) == 9 * 24 * 2  # base + 8 layers, 24 items, acc and logprob
    want = pd.read_csv(tmp_path / "undisturbed" / "retention.csv", index_col=0)
    got = pd.read_csv(tmp_path / "disturbed" / "retention.csv", index_col=0)
    pd.testing.assert_frame_equal(got, want, rtol=1e-4)


def test_a_unit_that_keeps_killing_its_worker_is_given_up_by_name(ray_cluster, tiny_model_dir, tmp_path):
    from prunelab.distributed.executor import RayExecutor, UnitsFailed

    cfg = config(tiny_model_dir("llama"), tmp_path / "poison", sweep={"batch_tokens": 4096})  # one unit
    executor = RayExecutor(num_actors=2, num_cpus=1, max_restarts=1, max_attempts=2, worker_class=CrashingWorker)
    try:
        with pytest.raises(UnitsFailed, match=r"task arithmetic, arithmetic items .*: drop-2 killed its worker 2 "
                                              r"times; not computed: drop-2"):
            run_sweep(cfg, executor, progress=False)
    finally:
        executor.close()
    stored = item_rows(ResultsStore(cfg.output_dir).read())
    assert set(stored.candidate) == {"base", "drop-0", "drop-1", "drop-3"}  # everything else finished
    assert stored.groupby("candidate").item_id.nunique().tolist() == [24] * 4


def _wide_model(tmp_path):
    import tiny

    return tiny.save(tmp_path / "wide-llama", "llama", num_layers=8, hidden=256)



def out_of_memory_worker(counter: Path, failures: int):
    """A worker class that runs out of (GPU) memory the first `failures` times it scores layer 2 removed, as a unit
    too large for the card would (`counter` counts them across restarts; the class travels to the actors by
    value)."""

    class OutOfMemoryWorker(Worker):
        def score(self, removed):
            import torch

            seen = int(counter.read_text()) if counter.exists() else 0
            if tuple(removed) == (2,) and seen < failures:
                counter.write_text(str(seen + 1))
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            return super().score(removed)

    return OutOfMemoryWorker


@pytest.mark.parametrize("failures", [1, 99])
def test_out_of_memory_in_a_unit_is_retried_carefully_then_given_up_by_name(ray_cluster, tiny_model_dir, tmp_path,
                                                                            failures):
    from prunelab.distributed.executor import RayExecutor, UnitsFailed

    counter = tmp_path / "out-of-memory-count"
    cfg = config(tiny_model_dir("llama"), tmp_path / "oom", sweep={"batch_tokens": 4096})  # one unit
    executor = RayExecutor(num_actors=2, num_cpus=1, max_restarts=1, max_attempts=2,
                           worker_class=out_of_memory_worker(counter, failures))
    try:
        if failures == 1:  # the careful retry fits
            run_sweep(cfg, executor, progress=False)
        else:
            with pytest.raises(UnitsFailed, match=r"drop-2 killed its worker 2 times; not computed: drop-2 "
                                                  r"\(last error: OutOfMemoryError: CUDA out of memory"):
                run_sweep(cfg, executor, progress=False)
    finally:
        executor.close()
    assert int(counter.read_text()) == min(failures, 1 + 2)  # the first try, then max_attempts careful ones
    stored = item_rows(ResultsStore(cfg.output_dir).read())
    want = {"base", "drop-0", "drop-1", "drop-3"} | ({"drop-2"} if failures == 1 else set())
    assert set(stored.candidate) == want  # an out-of-memory call aborts nothing else
    assert stored.groupby("candidate").item_id.nunique().tolist() == [24] * len(want)
    assert executor.resubmitted >= 1


class NodeOfItsOwnWorker(Worker):
    """Reports the first actor to ask as a node whose CPU has native bf16 and the next as one without: what `auto`
    would resolve to on two such nodes (`PRUNELAB_TEST_CLAIM` names the file that decides who came first)."""

    def computes_in(self):
        if not hasattr(self, "_node"):
            try:
                os.close(os.open(os.environ["PRUNELAB_TEST_CLAIM"], os.O_CREAT | os.O_EXCL))
                self._node = ("node-a", "bfloat16")
            except FileExistsError:
                self._node = ("node-b", "float32")
        return {**super().computes_in(), "node": self._node[0], "dtype": self._node[1]}


def test_a_worker_that_resolves_auto_otherwise_than_planned_refuses_to_score(ray_cluster, tiny_model_dir,
                                                                            tmp_path):
    import ray

    from prunelab.distributed.executor import RayExecutor
    from prunelab.errors import ConfigError
    from prunelab.hardware import dtype_name

    ray.shutdown()  # the actors need the claim file's name in their environment
    start_ray(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {
        "PYTHONPATH": TESTS, "PRUNELAB_TEST_CLAIM": str(tmp_path / "claim")}})
    planned = dtype_name("auto", "cpu")  # what this machine resolves auto to: one of the two actors disagrees
    other = {"bfloat16": "float32 on node node-b", "float32": "bfloat16 on node node-a"}[planned]
    cfg = config(tiny_model_dir("llama"), tmp_path / "mixed", model={"name": str(tiny_model_dir("llama")),
                                                                     "dtype": "auto"})
    executor = RayExecutor(num_actors=2, num_cpus=1, worker_class=NodeOfItsOwnWorker)
    try:
        with pytest.raises(ConfigError, match=f"model.dtype auto resolves to {other} \\(cpu\\), but to {planned} "
                                              "where the run was planned; nothing was scored there"):
            run_sweep(cfg, executor, progress=False)
    finally:
        executor.close()
    # workers that agree are recorded in meta.json
    agreed = config(tiny_model_dir("llama"), tmp_path / "agreed")
    executor = RayExecutor(num_actors=2, num_cpus=1)
    try:
        run_sweep(agreed, executor, progress=False)
    finally:
        executor.close()
    workers = json.loads((tmp_path / "agreed" / "meta.json").read_text())["workers"]
    assert len(workers) == 2 and {w["dtype"] for w in workers} == {"float32"}


def test_what_counts_as_out_of_memory_for_a_careful_retry():
    """An engine's memory failures are retried like torch's: vLLM's EngineDeadError (its engine core died, as an
    OOM kills it) and its KV-cache refusal at start; a plain bug is not."""
    import torch

    from prunelab.distributed.executor import out_of_memory

    class EngineDeadError(Exception):  # vllm.v1.engine.exceptions.EngineDeadError, by name: vLLM may not be here
        pass

    class Carried(Exception):  # as Ray's RayTaskError carries the actor's error
        def __init__(self, cause):
            super().__init__(str(cause))
            self.cause = cause

    def raised_from(error, cause):
        try:
            raise error from cause
        except Exception as exc:
            return exc

    assert out_of_memory(Carried(torch.OutOfMemoryError("CUDA out of memory")))
    assert out_of_memory(Carried(EngineDeadError("EngineCore encountered an issue.")))
    assert out_of_memory(raised_from(RuntimeError("engine start failed"),
                                     ValueError("No available memory for the cache blocks. Try increasing "
                                                "`gpu_memory_utilization`")))
    assert not out_of_memory(Carried(TypeError("forward() got an unexpected keyword argument")))
    assert not out_of_memory(ValueError("bad input"))
