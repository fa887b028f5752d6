"""Sweeps on real multi-node Ray clusters (two raylets on this machine, `ray.cluster_utils.Cluster`): actors spread
over the nodes; a node lost mid-sweep loses and duplicates nothing; requests no node can satisfy and clusters that
do not answer fail at once with what was wrong, never a hang."""

import os
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fresh_ray import start_ray

from prunelab.cli import main
from prunelab.config import parse_config
from prunelab.errors import ConfigError
from prunelab.execution.run import InProcessExecutor, run_plan
from prunelab.execution.worker import Worker
from prunelab.results import ResultsStore, item_rows
from prunelab.stages.sweep import plan_sweep, run_sweep

TESTS = str(Path(__file__).parent)
ROOT = Path(__file__).resolve().parent.parent


class NodeWorker(Worker):
    """A worker that says which node it runs on, and leaves a file named after its node when it starts a unit. Off the
    head node (`PRUNELAB_TEST_HEAD_NODE`) it then pauses, so that the head's unit is written first: its unit is
    surely still running when the node is taken away."""

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def prepare(self, requests):
        (Path(os.environ["PRUNELAB_TEST_MARKERS"]) / self.node()).touch()
        if os.environ.get("PRUNELAB_TEST_HEAD_NODE") not in (None, self.node()):
            time.sleep(20)
        return super().prepare(requests)


def sweep_config(model_dir, out, **extra) -> dict:
    return {"kind": "sweep", "name": "cluster", "model": {"name": str(model_dir), "dtype": "float32"},
            "tasks": [{"name": "arithmetic", "limit": 24}], "sweep": {"batch_tokens": 768},
            "output_dir": str(out), **extra}


def write_config(tmp_path, data) -> str:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_an_unreachable_cluster_fails_at_once(tiny_model_dir, tmp_path, capsys):
    config = write_config(tmp_path, sweep_config(tiny_model_dir("llama"), tmp_path / "out"))
    assert main(["sweep", config, "--address", "127.0.0.1:9"]) == 2  # nothing listens on the discard port
    err = capsys.readouterr().err
    assert "no Ray cluster answers at 127.0.0.1:9" in err
    assert main(["sweep", config, "--address", "http://127.0.0.1:8265"]) == 2
    assert "dashboard (job submission) address" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture
def local_ray():
    import ray

    start_ray(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_a_request_no_node_can_satisfy_fails_at_once(local_ray, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    config = write_config(tmp_path, sweep_config(tiny_model_dir("llama"), out))
    assert main(["sweep", config, "ray.actors.num_gpus=1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "sweep actors each ask for {CPU: 1, GPU: 1} (ray.actors.num_cpus / num_gpus / accelerator_type)" in err
    assert "alive nodes offer {CPU: 2}; the cluster does not autoscale" in err
    assert main(["sweep", config, "ray.actors.accelerator_type=A100", "--no-progress"]) == 2
    assert "accelerator_type:A100" in capsys.readouterr().err


@pytest.mark.slow
def test_more_actors_than_fit_still_finish(local_ray, tiny_model_dir, tmp_path):
    """Four one-CPU actors on two CPUs: two are never placed, and the two that are do all the work."""
    from prunelab.distributed.executor import RayExecutor

    cfg = parse_config(sweep_config(tiny_model_dir("llama"), tmp_path / "out"))
    with RayExecutor(num_actors=4, num_cpus=1) as executor:
        run_sweep(cfg, executor, progress=False)
    rows = ResultsStore(cfg.output_dir).read().to_pandas()
    assert len(rows) == 5 * 24 * 2 and not rows.duplicated(["task", "candidate", "item_id", "metric"]).any()


@pytest.mark.slow
def test_work_no_actor_can_take_fails_after_the_placement_timeout(local_ray, tiny_model_dir, tmp_path):
    """Every CPU held by something else: the sweep's actors fit the cluster but are never placed. The sweep fails
    after `placement_timeout_s` with what it waited for, instead of waiting forever."""
    import ray

    from prunelab.distributed.executor import NoActorPlaced, RayExecutor

    @ray.remote(num_cpus=2)
    class Squatter:
        def ready(self):
            return True

    squatter = Squatter.remote()
    ray.get(squatter.ready.remote())
    cfg = parse_config(sweep_config(tiny_model_dir("llama"), tmp_path / "out"))
    with RayExecutor(num_actors=2, num_cpus=1, placement_timeout_s=3) as executor:
        with pytest.raises(NoActorPlaced, match=r"for 3 s no sweep actor was ready to take the 5 candidates waiting "
                                                r"\(ray.placement_timeout_s\): each actor asks for \{CPU: 1\}"):
            run_sweep(cfg, executor, progress=False)
    ray.kill(squatter)


class RemoveNodeMidUnit(ResultsStore):
    """Takes a node out of the cluster (its raylet and every process on it killed) at the first result written
    after the node's actor started a unit: that actor is mid-unit then."""

    def __init__(self, root, cluster, node, markers, **kw):
        super().__init__(root, **kw)
        self.cluster, self.node, self.markers, self.removed = cluster, node, markers, False

    def write(self, *args, **kw):
        if not self.removed and (self.markers / self.node.node_id).exists():
            self.cluster.remove_node(self.node, allow_graceful=False)
            self.removed = True
        return super().write(*args, **kw)


@pytest.mark.slow
def test_two_nodes_spread_the_actors_and_losing_one_loses_nothing(tiny_model_dir, tmp_path):
    import ray
    import tiny
    from ray.cluster_utils import Cluster

    from prunelab.distributed.executor import RayExecutor
    from prunelab.stages.common import worker_spec

    model_dir = tiny.save(tmp_path / "wide-llama", "llama", num_layers=8, hidden=256)
    undisturbed = parse_config(sweep_config(model_dir, tmp_path / "undisturbed", sweep={"batch_tokens": 256}))
    run_sweep(undisturbed, InProcessExecutor(), progress=False)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker_node = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    markers = tmp_path / "markers"
    markers.mkdir()
    start_ray(address=cluster.address,
             runtime_env={"env_vars": {"PYTHONPATH": TESTS, "PRUNELAB_TEST_MARKERS": str(markers),
                                       "PRUNELAB_TEST_HEAD_NODE": cluster.head_node.node_id}})
    try:
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        cfg = parse_config(sweep_config(model_dir, tmp_path / "disturbed", sweep={"batch_tokens": 256}))  # 2 units
        executor = RayExecutor(num_actors=2, num_cpus=1, worker_class=NodeWorker, restart_wait_s=5)
        spec = worker_spec(cfg.model, cfg.sweep.batch_tokens, cfg.generation, sweep=cfg.sweep)
        actors = executor._pool(spec, 2)
        nodes = ray.get([a.node.remote() for a in actors])
        assert set(nodes) == {cluster.head_node.node_id, worker_node.node_id}  # one actor per node

        # the sweep's plan run by the executor into a store that removes the node mid-unit (run_sweep's own path,
        # given this store through run_plan's public seam)
        store = RemoveNodeMidUnit(cfg.output_dir, cluster, worker_node, markers, model=cfg.model.name)
        try:
            run_plan(plan_sweep(cfg, set()), store, executor, spec, progress=False)
        finally:
            executor.close()
        assert store.removed and executor.resubmitted >= 1  # the lost node's unit went to the other actor
    finally:
        ray.shutdown()
        cluster.shutdown()

    rows = ResultsStore(cfg.output_dir).read().to_pandas()
    assert not rows.duplicated(["task", "candidate", "item_id", "metric"]).any()  # nothing written twice
    assert len(rows) == 9 * 24 * 2  # nothing lost: base + 8 layers, 24 items, acc and logprob
    def values(root):
        rows = item_rows(ResultsStore(root).read())
        return rows.set_index(["task", "candidate", "item_id", "metric"])["value"].sort_index()

    pd.testing.assert_series_equal(values(cfg.output_dir), values(undisturbed.output_dir), rtol=1e-4)



def test_a_working_directory_over_rays_upload_limit_is_refused_before_upload(tmp_path, capsys):
    from prunelab.distributed.submit import check_upload, upload_files, upload_limit

    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "sweep.py").write_text("")
    (tmp_path / "data").mkdir()
    with open(tmp_path / "data" / "weights.bin", "wb") as f:  # sparse: the size without the bytes
        f.truncate(upload_limit() + 2**20)
    with pytest.raises(ConfigError, match=r"holds 513 MiB to upload .* over Ray's limit of 512 MiB\. Largest: data "
                                          r"\(513 MiB\), jobs \(0 MiB\)"):
        check_upload(tmp_path, [])
    # what Ray leaves out does not count: .gitignore, and the runtime env's excludes
    (tmp_path / ".gitignore").write_text("data/\n")
    assert check_upload(tmp_path, []) < 2**20
    (tmp_path / ".gitignore").unlink()
    assert check_upload(tmp_path, ["data"]) < 2**20
    # this repository, as `prunelab submit` would send it, fits (no virtual environment, no runs)
    excludes = yaml.safe_load((ROOT / "cluster" / "runtime_env.yaml").read_text())["excludes"]
    sent = upload_files(ROOT, excludes)
    assert sum(sent.values()) < upload_limit() / 8
    assert not any(part in (".venv", ".git", "runs") for p in sent for part in p.relative_to(ROOT).parts)
    assert ROOT / "jobs" / "sweep.py" in sent
