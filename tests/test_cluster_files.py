"""The cluster files users start from: every one parses, passes the schema available offline (Ray's own cluster
launcher schema; KubeRay's required fields from its v1 API types), asks for A100s the way the autoscaler can see,
sets up token authentication on every node, and names only paths that exist."""

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import yaml

from prunelab.config import STAGE_CONFIGS
from prunelab.distributed.resources import (
    ClusterOffer,
    InfeasibleRequest,
    _launcher_node_types,
    require,
    resource_request,
)
from prunelab.stages.registry import STAGES, job_file, job_names

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER_FILES = ["ray-cluster.yaml", "cluster/ray-cluster-gcp.yaml"]
A100 = "accelerator_type:A100"


def load(path):
    return yaml.safe_load((ROOT / path).read_text())


@pytest.mark.parametrize("path", LAUNCHER_FILES)
def test_launcher_config_passes_rays_schema(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load(path)
    validate_config(prepare_config(config))  # raises on a missing or misspelled key
    # the images of cluster/Dockerfile: a CPU head, GPU workers (nothing reinstalls the CUDA stack at launch)
    docker = config["docker"]
    assert "image" not in docker and docker["head_image"].endswith(f"{ray.__version__}-cpu")
    assert docker["worker_image"] == docker["head_image"].replace("-cpu", "-gpu")
    workers = {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0}
    assert workers and all(t["min_workers"] == 0 and t["max_workers"] > 0 for t in workers.values())  # autoscaled
    # every worker type declares its GPUs and the A100 marker, so the driver can check requests against them
    assert all(t["resources"]["GPU"] == t["resources"][A100] > 0 for t in workers.values())
    assert sorted(t["resources"]["GPU"] for t in workers.values())[-1] == 8  # an 8 x A100 type
    # token authentication on every node: the token is copied and both start commands run in token mode
    token = [dest for dest in config["file_mounts"] if dest.endswith(".ray/auth_token")]
    assert token
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in config[key] if "ray start" in c)
        assert "RAY_AUTH_MODE=token" in start and f"RAY_AUTH_TOKEN_PATH={token[0]}" in start
    # prunelab comes from this repository, GPU nodes with its GPU extra, the head with what `ray up`'s autoscaler
    # needs (the dependency list lives in pyproject.toml only)
    repo = next(dest for dest, src in config["file_mounts"].items() if src == ".")
    assert config["worker_setup_commands"] == [f'pip install -q -e "{repo}[gpu]"']
    assert config["head_setup_commands"] == [f'pip install -q -e "{repo}[cluster]"']
    assert not config.get("setup_commands")
    # one shared file system at /data on every node (outputs written by one node are read on another), mounted on
    # the host before the container starts, handed to the image's user, and passed into every container
    assert "--volume=/data:/data" in config["docker"]["run_options"]
    for name, node_type in config["available_node_types"].items():
        commands = " ".join(node_type.get("initialization_commands", config.get("initialization_commands", [])))
        assert "mount -t nfs" in commands and " /data" in commands and "chown 1000:100 /data" in commands, name
    extras = load_pyproject()["project"]["optional-dependencies"]
    assert {"gpu", "cluster"} <= set(extras)
    # GPU hosts with a driver that runs the CUDA 13 of `.[gpu]` (R580+), never the provider's default image
    for name, node_type in workers.items():
        node = node_type["node_config"]
        if config["provider"]["type"] == "aws":
            assert node["ImageId"] == AWS_GPU_AMI, name
        else:
            images = [d["initializeParams"]["sourceImage"] for d in node["disks"]]
            assert images and all(i.endswith("-nvidia-580") for i in images), name
            assert {"key": "install-nvidia-driver", "value": "True"} in node["metadata"]["items"]
            assert any("nvidia-smi" in c for c in node_type["initialization_commands"])  # waits for the driver


AWS_GPU_AMI = "resolve:ssm:/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"


def load_pyproject():
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_driver_sees_the_launcher_node_types(tmp_path):
    """On a `ray up` head the driver reads the node types the autoscaler may add, and refuses what none offers."""
    bootstrap = tmp_path / "ray_bootstrap_config.yaml"
    bootstrap.write_text((ROOT / "ray-cluster.yaml").read_text())
    types = _launcher_node_types(str(bootstrap))
    assert set(types) == {"a100x8-40g", "a100x8-80g"}
    offer = ClusterOffer(nodes=[{"CPU": 0.0, "memory": 1e9}], node_types=types, autoscaling=True)
    require(resource_request(8, 1, "A100"), "sweep actors", "ray.actors", offer)  # an A100 node will come
    with pytest.raises(InfeasibleRequest, match=r"accelerator_type:H100.*a100x8-40g \{CPU: 96, GPU: 8"):
        require(resource_request(1, 1, "H100"), "sweep actors", "ray.actors", offer)


KUBERAY_REQUIRED = {  # fields without `omitempty` in ray-operator/apis/ray/v1/raycluster_types.go (KubeRay 1.5+)
    "headGroupSpec": ["rayStartParams", "template"],
    "workerGroupSpecs": ["groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"],
}


def check_ray_cluster_spec(spec: dict):
    assert spec["rayVersion"] == ray.__version__
    assert spec["authOptions"] == {"mode": "token"}  # the operator makes the token and gives it to every pod
    assert spec["enableInTreeAutoscaling"] is True
    for key in KUBERAY_REQUIRED["headGroupSpec"]:
        assert key in spec["headGroupSpec"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    images = set()
    for pod in [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]:
        for c in pod["spec"]["containers"]:
            images.add(c["image"])
            assert "RAY_AUTH_TOKEN" not in {e["name"] for e in c.get("env", [])}  # never a token in a manifest
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    assert head.endswith(f"{ray.__version__}-cpu") and images == {head, head.replace("-cpu", "-gpu")}
    gpus = []
    for group in spec["workerGroupSpecs"]:
        for key in KUBERAY_REQUIRED["workerGroupSpecs"]:
            assert key in group, f"{group.get('groupName')}: {key}"
        assert group["minReplicas"] == 0 and group["maxReplicas"] > 0  # scale from zero
        # the group advertises what its pods will have: the autoscaler cannot probe a pod that does not exist
        container = group["template"]["spec"]["containers"][0]
        assert group["resources"]["GPU"] == group["resources"][A100] == container["resources"]["limits"][
            "nvidia.com/gpu"]
        gpus.append(int(group["resources"]["GPU"]))
    assert sorted(gpus) == [1, 8]


def test_kuberay_manifests():
    cluster, job = load("cluster/kuberay-raycluster.yaml"), load("cluster/kuberay-rayjob.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    check_ray_cluster_spec(cluster["spec"])
    # every pod can write the shared volume as the image's user (its group owns what is mounted)
    spec = cluster["spec"]
    pods = [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
    assert all(pod["securityContext"] == {"fsGroup": 100} for pod in pods)
    assert job["spec"]["rayClusterSpec"] == cluster["spec"]  # one cluster, written twice: kept equal here
    assert job["spec"]["shutdownAfterJobFinishes"] is True and job["spec"]["ttlSecondsAfterFinished"] > 0
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    # a valid runtime env (its working_dir is a path inside the image: checked against the Dockerfile below)
    ray.runtime_env.RuntimeEnv(**{k: v for k, v in runtime_env.items() if k != "working_dir"})
    # the entrypoint runs a job file of this repository, with a config that exists, from the image's copy of it
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "python" and (ROOT / argv[1]).exists() and (ROOT / argv[2]).exists()
    assert runtime_env["working_dir"] == dockerfile_workdir()


def dockerfile_workdir() -> str:
    lines = (ROOT / "cluster/Dockerfile").read_text().splitlines()
    return next(line.split()[1] for line in lines if line.startswith("WORKDIR"))


def test_dockerfile_builds_from_this_ray_without_buildkit_and_copies_what_exists():
    text = (ROOT / "cluster/Dockerfile").read_text()
    lines = [line for line in text.splitlines() if line and line[0] != "#"]
    assert lines[0] == f"ARG BASE=rayproject/ray:{ray.__version__}-py311-gpu" and lines[1] == "FROM ${BASE}"
    # every documented build names this Ray's CPU image for the head
    assert f"BASE=rayproject/ray:{ray.__version__}-py311-cpu" in text
    copies = [line.split()[1:] for line in lines if line.startswith("COPY")]
    # the classic builder copies as root unless told: everything belongs to the image's user, who installs it
    assert copies and all(c[0] == "--chown=ray:users" for c in copies)
    assert all((ROOT / src).exists() for c in copies for src in c[1:-1])
    # nothing only BuildKit understands
    assert not re.search(r"^# ?syntax=|--mount=|--chmod=|--link|<<", text, re.MULTILINE)
    # the classic builder's WORKDIR would be root-owned: it is made and handed over first
    workdir = dockerfile_workdir()
    assert f"RUN mkdir -p {workdir} && chown ray:users {workdir}" in lines[lines.index(f"WORKDIR {workdir}") - 2]
    assert any('".[${EXTRAS}]"' in line for line in lines if line.startswith("RUN")) and "ARG EXTRAS=gpu" in lines
    # every build the README and the Dockerfile show passes only arguments the Dockerfile declares, and extras that
    # pyproject.toml has
    declared = {line.split()[1].split("=")[0] for line in lines if line.startswith("ARG")}
    shown = text + (ROOT / "README.md").read_text() + (ROOT / "docs" / "cluster.md").read_text()
    assert set(re.findall(r"--build-arg (\w+)=", shown)) == declared
    extras = set(load_pyproject()["project"]["optional-dependencies"])
    assert set(re.findall(r"--build-arg EXTRAS=(\w+)", shown)) | {"gpu"} <= extras


def test_runtime_env_is_valid_and_keeps_no_second_dependency_list():
    env = load("cluster/runtime_env.yaml")
    ray.runtime_env.RuntimeEnv(**env)
    assert not {"pip", "uv", "conda", "py_modules"} & set(env)
    assert {".venv", "runs"} <= set(env["excludes"])


JOBS = job_names()


def test_the_jobs_are_the_registry_stages_and_nothing_else():
    assert sorted(p.name for p in (ROOT / "jobs").glob("*.py")) == sorted(job_file(n).name for n in JOBS)
    assert set(STAGES.names()) == set(STAGE_CONFIGS)  # every stage config has its stage, and no stage lacks one


@pytest.mark.parametrize("stage", sorted(JOBS))
def test_every_stage_has_a_job_with_local_and_submit_lines(stage):
    path = ROOT / job_file(stage)
    tree = ast.parse(path.read_text())
    doc = ast.get_docstring(tree)
    # no library logic: the CLI's command of the file's name, as a job
    assert "job_main(__file__, sys.argv[1:])" in path.read_text()
    run = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0 and f"usage: prunelab {stage} " in run.stdout, run.stdout + run.stderr
    local = re.search(rf"^\s+python jobs/{path.name} (\S+)", doc, re.M)
    submit = re.search(rf"ray job submit --working-dir \. --runtime-env cluster/runtime_env.yaml .*?-- python "
                       rf"jobs/{path.name} (\S+)", doc, re.S)
    assert local and submit, doc
    for named in (local.group(1), submit.group(1)):
        assert named.startswith("/data/") or (ROOT / named).exists() or named.startswith("runs/"), named


def test_the_cli_and_submit_offer_every_stage_of_the_registry():
    from prunelab import cli

    helps = subprocess.run([sys.executable, "-m", "prunelab", "--help"], capture_output=True, text=True).stdout
    submit = subprocess.run([sys.executable, "-m", "prunelab", "submit", "--help"], capture_output=True,
                            text=True).stdout
    for name in JOBS:
        assert name in helps and name in submit
    with pytest.raises(SystemExit) as refused:  # argparse: a stage the registry does not hold
        cli.main(["submit", "--address", "http://127.0.0.1:9", "no-such-stage"])
    assert refused.value.code == 2


def test_gpu_or_cpu_is_decided_from_what_the_cluster_can_add_not_from_what_is_up():
    """Every shipped cluster starts with no GPU worker: SGR's vLLM engines and Ray Train's workers must still take
    the GPU branch there, and a request that cannot be decided, or that names a GPU for a CPU run, is refused."""
    from prunelab.distributed.resources import ClusterOffer, InfeasibleRequest, uses_gpu

    head = {"CPU": 8.0}
    from_zero = ClusterOffer([head], {"gpu-worker": {"CPU": 12.0, "GPU": 1.0, "accelerator_type:A100": 1.0}}, True)
    assert uses_gpu(None, "vLLM engine replicas", "engine.use_gpu", offer=from_zero) is True
    assert uses_gpu(None, "Ray Train workers", "workers.use_gpu", "A100", offer=from_zero) is True
    cpu_only = ClusterOffer([head, {"CPU": 16.0}], {}, False)
    assert uses_gpu(None, "Ray Train workers", "workers.use_gpu", offer=cpu_only) is False
    with pytest.raises(InfeasibleRequest, match="accelerator_type 'A100' asks for a GPU, but engine.use_gpu is false"):
        uses_gpu(False, "vLLM engine replicas", "engine.use_gpu", "A100", offer=from_zero)
    with pytest.raises(InfeasibleRequest, match="workers.use_gpu asks for GPUs, but no node of this cluster can ever"):
        uses_gpu(True, "Ray Train workers", "workers.use_gpu", offer=cpu_only)
    kuberay = ClusterOffer([head], {}, True)  # autoscaling, node types not published
    with pytest.raises(InfeasibleRequest, match="whether GPUs will come cannot be known; set engine.use_gpu: true"):
        uses_gpu(None, "vLLM engine replicas", "engine.use_gpu", offer=kuberay)
    assert uses_gpu(True, "vLLM engine replicas", "engine.use_gpu", offer=kuberay) is True  # left to the autoscaler
    assert uses_gpu(None, "vLLM engine replicas", "engine.use_gpu", "H100", offer=kuberay) is True


def test_a_recovery_batch_the_workers_cannot_split_is_refused_by_check(capsys):
    from prunelab.cli import main

    assert main(["recover", "configs/recover/qwen-bi25-sgr.yaml", "workers.num_workers=8", "--check"]) == 2
    assert "training.batch_size (8) is not a multiple of training.per_device_batch_size (2) x workers.num_workers " \
           "(8)" in capsys.readouterr().err
    assert main(["recover", "configs/recover/qwen-bi25-sgr.yaml", "workers.num_workers=4", "--check"]) == 0
