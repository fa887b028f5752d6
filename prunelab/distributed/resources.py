"""Can this cluster ever place what a stage asks for? Checked before actors, Ray Data pools or Ray Train workers are
requested, because Ray itself waits forever for a request no node can satisfy.

A request is feasible when one alive node has every resource it asks for, or, on an autoscaling cluster, when one of
its node types does. The node types are known on a cluster-launcher head (`~/ray_bootstrap_config.yaml`, where
`ray job submit` runs the driver). Other autoscalers (KubeRay) do not publish theirs: there the request is left to
the autoscaler, and the stage's placement timeout (`ray.placement_timeout_s`) bounds the wait.
"""

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import ray

from prunelab.errors import PrunelabError

log = logging.getLogger(__name__)
LAUNCHER_CONFIG = "~/ray_bootstrap_config.yaml"
ACCELERATOR_PREFIX = "accelerator_type:"
# for actors that ask for no GPU: Ray sets CUDA_VISIBLE_DEVICES only for actors given GPUs, so without it every
# zero-GPU actor on a GPU node sees (and a vLLM or CUDA torch in it takes) GPU 0
HIDE_GPUS = {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}


class InfeasibleRequest(PrunelabError):
    """No node, present or to come, can ever satisfy a resource request."""


def resource_request(num_cpus: float = 0, num_gpus: float = 0, accelerator_type: str | None = None) -> dict:
    """Ray's resource dict for one actor or worker (the accelerator type as Ray's own marker resource)."""
    request = {"CPU": float(num_cpus)} if num_cpus else {}
    if num_gpus:
        request["GPU"] = float(num_gpus)
    if accelerator_type:
        request[ACCELERATOR_PREFIX + accelerator_type] = 0.001
    return request


@dataclass
class ClusterOffer:
    """What a cluster has (`nodes`: the resources of each alive node) and may add (`node_types`: name -> resources of
    each autoscaling node type, where known; `autoscaling`: whether an autoscaler runs at all)."""

    nodes: list[dict] = field(default_factory=list)
    node_types: dict[str, dict] = field(default_factory=dict)
    autoscaling: bool = False

    def fits(self, request: dict) -> bool:
        return any(_fits(request, n) for n in self.nodes) or any(_fits(request, t) for t in self.node_types.values())

    def describe(self) -> str:
        nodes = sorted({short(n) for n in self.nodes})
        text = f"alive nodes offer {', '.join(nodes) or 'nothing'}"
        if self.node_types:
            text += "; autoscaling node types: " + ", ".join(f"{k} {short(v)}" for k, v in self.node_types.items())
        elif not self.autoscaling:
            text += "; the cluster does not autoscale"
        return text


def _fits(request: dict, resources: dict) -> bool:
    return all(resources.get(k, 0) >= v - 1e-9 for k, v in request.items())


def short(resources: dict) -> str:
    """CPU, GPU and accelerator entries of a resource dict, e.g. {CPU: 1, GPU: 1}."""
    keys = [k for k in resources if k in ("CPU", "GPU") or k.startswith(ACCELERATOR_PREFIX)]
    return "{" + ", ".join(f"{k}: {resources[k]:g}" for k in sorted(keys)) + "}"


def _launcher_node_types(path: str = LAUNCHER_CONFIG) -> dict[str, dict]:
    """Node types of a cluster-launcher cluster, from the config `ray up` leaves on the head. Their `resources` must
    be spelled out for the check to see them (ray-cluster.yaml does: AWS fills them in only inside the autoscaler)."""
    file = Path(os.path.expanduser(path))
    if not file.exists():
        return {}
    import yaml

    config = yaml.safe_load(file.read_text()) or {}
    head = config.get("head_node_type")
    return {name: spec.get("resources") or {} for name, spec in (config.get("available_node_types") or {}).items()
            if name != head and (spec.get("max_workers") or 0) > 0}


def _autoscaler_running() -> bool:
    """Whether an autoscaler may add nodes. Every Ray runs a monitor that publishes a status (autoscaler v1's KV
    entry); without an autoscaling config it is read-only and names each node's type `node_<id>`. Autoscaler v2
    (KubeRay's) reports a version of its state above 0."""
    import json

    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    try:
        raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
        report = (json.loads(raw).get("autoscaler_report") or {}) if raw else {}
        if any(not str(t).startswith("node_") for t in (report.get("node_type_mapping") or {}).values()):
            return True
        if ray._config.enable_autoscaler_v2():
            return True
        from ray.autoscaler.v2.sdk import get_cluster_status

        status = get_cluster_status(ray.get_runtime_context().gcs_address, timeout=5)
        return str(status.stats.autoscaler_version or "0") != "0"
    except Exception:  # an older or client-mode Ray: assume the plain case
        return False


def cluster_offer() -> ClusterOffer:
    nodes = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    types = _launcher_node_types()
    return ClusterOffer(nodes, types, bool(types) or _autoscaler_running())


def require(request: dict, what: str, settings: str, offer: ClusterOffer | None = None) -> None:
    """Raises `InfeasibleRequest` unless some node, present or (as far as can be known) to come, can place one
    `request`. `what` names the requester, `settings` the config keys that size it."""
    offer = offer or cluster_offer()
    if offer.fits(request):
        return
    if offer.autoscaling and not offer.node_types:
        log.warning("no alive node offers %s for %s; waiting for the autoscaler to add one", short(request), what)
        return
    raise InfeasibleRequest(f"{what} each ask for {short(request)} ({settings}), but no node of this cluster can "
                            f"ever provide that: {offer.describe()}. Lower the request, or add a node type that "
                            f"offers it.")


def uses_gpu(requested: bool | None, what: str, setting: str, accelerator_type: str | None = None,
             offer: ClusterOffer | None = None) -> bool:
    """Whether `what` runs on GPUs. `requested` True or False is the config's word; None (auto) decides from what the
    cluster has or can add: a GPU on an alive node or on one of its autoscaling node types, never from the nodes that
    happen to be up (a cluster that scales GPU workers from zero has none up when a stage starts). Where that cannot
    be known (an autoscaler that does not publish its node types, as KubeRay's, and no GPU node up) the config must
    say; an `accelerator_type` with a CPU decision is an error, not a run on CPU."""
    offer = offer or cluster_offer()
    if requested is None and accelerator_type:
        requested = True  # a GPU model asked for by name
    if requested is None:
        gpus = [short(n) for n in offer.nodes if n.get("GPU", 0) > 0]
        gpus += [name for name, t in offer.node_types.items() if t.get("GPU", 0) > 0]
        if not gpus and offer.autoscaling and not offer.node_types:
            raise InfeasibleRequest(
                f"{what}: {setting} is auto, no node with a GPU is up, and this cluster's autoscaler does not publish "
                f"its node types (KubeRay), so whether GPUs will come cannot be known; set {setting}: true (GPU) or "
                "false (CPU)")
        requested = bool(gpus)
    if accelerator_type and not requested:
        raise InfeasibleRequest(f"{what}: accelerator_type {accelerator_type!r} asks for a GPU, but {setting} is "
                                "false; set it to true, or drop accelerator_type to run on CPUs")
    if requested and not offer.fits(resource_request(0, 1)) and not (offer.autoscaling and not offer.node_types):
        raise InfeasibleRequest(f"{what}: {setting} asks for GPUs, but no node of this cluster can ever provide one: "
                                f"{offer.describe()}")
    return requested


def check_gpu_node(what: str, accelerator_type: str | None = None) -> None:
    """Checks a GPU node (`prunelab.hardware.check_gpu_node`: its NVIDIA driver against the CUDA its torch needs, a
    GPU this process sees, kernels for it in torch) in a small task placed where `what` will run, before engines or
    training workers start there: an old host driver, a container without GPU access or a GPU too old for the
    build is then one clear error, not a failure deep in CUDA init inside a vLLM engine or a training worker that
    Ray restarts over and over. On a cluster that scales GPU nodes from zero this task is what waits
    for the first one."""
    from prunelab.hardware import check_gpu_node as check

    probe = ray.remote(check).options(num_cpus=0, num_gpus=0.01, accelerator_type=accelerator_type,
                                                 max_retries=0)
    try:
        ray.get(probe.remote())
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, PrunelabError):
            raise type(cause)(f"{what}: {cause}") from None
        raise


def placeable(request: dict, count: int, offer: ClusterOffer | None = None) -> int:
    """How many of `count` such requests the alive nodes can hold at once (for messages; autoscaling may add more)."""
    offer = offer or cluster_offer()
    total = 0
    for node in offer.nodes:
        total += min((math.floor(node.get(k, 0) / v + 1e-9) for k, v in request.items() if v > 0), default=count)
    return min(total, count)
