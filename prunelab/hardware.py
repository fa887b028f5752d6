"""This machine, as far as it changes a number: a GPU, a CPU that multiplies bf16 natively, and so what
`dtype: auto` means here (bf16 on a GPU or such a CPU, fp32 elsewhere). torch is imported only to ask about the GPU."""

import functools
import re
from pathlib import Path

from prunelab.errors import PrunelabError

DRIVER_FILE = "/proc/driver/nvidia/version"  # the host kernel's, visible inside containers too
# the oldest Linux driver each CUDA major version runs on (NVIDIA's minor version compatibility table)
CUDA_MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}


class GPUDriverTooOld(PrunelabError):
    """The node's NVIDIA driver cannot run the CUDA that the installed torch was built for."""


class GPUNotUsable(PrunelabError):
    """A node asked to run GPU work whose process sees no GPU, or a GPU the installed torch has no kernels for."""


def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and ~7x slower
    than fp32 (measured on an AVX2-only EPYC: 19 vs 140 GFLOP/s)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def nvidia_driver_version(path: str = DRIVER_FILE) -> str | None:
    """The loaded NVIDIA kernel driver's version ('580.65.06'), or None where there is none."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    found = re.search(r"Kernel Module\b.*?\s(\d+\.\d+(?:\.\d+)?)\s", text)
    return found.group(1) if found else None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def check_gpu_driver(torch_cuda: str | None = None, driver: str | None = None) -> None:
    """Raises `GPUDriverTooOld` where this node's driver (`driver`, default: the loaded one) is older than the CUDA
    the installed torch was built for (`torch_cuda`, default: torch.version.cuda) needs. Without the check that
    node fails deep in CUDA init, or `auto` quietly runs on the CPU (torch sees no usable GPU)."""
    if torch_cuda is None:
        import torch

        torch_cuda = torch.version.cuda
    driver = driver or nvidia_driver_version()
    if not torch_cuda or not driver:
        return  # a CPU torch, or no NVIDIA driver: nothing to compare
    major = int(torch_cuda.split(".")[0])
    needed = CUDA_MIN_DRIVER.get(major)
    if needed and _version(driver) < _version(needed):
        raise GPUDriverTooOld(
            f"this node's NVIDIA driver is {driver}, but the installed torch is built for CUDA {torch_cuda}, which "
            f"needs driver {needed} or newer (R{needed.split('.')[0]}+): GPU stages would fail at CUDA init. Run "
            "on hosts with a newer driver (README, 'GPU hosts and drivers': the launcher configs' host images, "
            "KubeRay GPU nodes), or install a torch built for a CUDA this driver runs.")


def runs_kernels_for(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Whether a torch built for `arch_list` (torch.cuda.get_arch_list(): 'sm_80', 'compute_90', ...) has kernels for
    a GPU of compute `capability`: a cubin of the same major version and no newer minor, or PTX of no newer version
    (which the driver compiles)."""
    import re

    for arch in arch_list:
        found = re.fullmatch(r"(sm|compute)_(\d+)(\d)[a-z]?", arch)  # sm_90a: the arch-specific variant of 9.0
        if not found:
            continue
        kind, built = found.group(1), (int(found.group(2)), int(found.group(3)))
        if kind == "sm" and built[0] == capability[0] and built[1] <= capability[1]:
            return True
        if kind == "compute" and built <= tuple(capability):
            return True
    return False


def check_gpu_node(available: bool | None = None, capabilities: list[tuple[int, int]] | None = None,
                   arch_list: list[str] | None = None, driver: str | None = None, torch_cuda: str | None = None
                   ) -> None:
    """What a node that will run GPU work must pass before an engine or a training worker starts there: its driver
    runs the CUDA torch was built for (`check_gpu_driver`), this process sees a GPU (a container started without
    GPU access still reads the host's driver file), and torch has kernels for every GPU it sees (CUDA 13 builds
    dropped Volta, sm_70). Defaults: this machine's."""
    import torch

    torch_cuda = torch.version.cuda if torch_cuda is None else torch_cuda
    if not torch_cuda:
        raise GPUNotUsable(f"the installed torch ({torch.__version__}) is a CPU build: GPU work cannot run on this node; "
                           "install the CUDA build (the [gpu] image, cluster/Dockerfile)")
    check_gpu_driver(torch_cuda, driver)
    available = torch.cuda.is_available() if available is None else available
    if not available:
        raise GPUNotUsable(f"this node has an NVIDIA driver ({driver or nvidia_driver_version() or 'unknown'}) but this "
                           "process sees no GPU: a container without GPU access (docker --gpus, the NVIDIA container "
                           "runtime, the pod's nvidia.com/gpu limit) or CUDA_VISIBLE_DEVICES hiding them")
    if capabilities is None:
        capabilities = [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]
    arch_list = torch.cuda.get_arch_list() if arch_list is None else arch_list
    for index, capability in enumerate(capabilities):
        if not runs_kernels_for(tuple(capability), arch_list):
            raise GPUNotUsable(f"GPU {index} has compute capability {capability[0]}.{capability[1]}, but the installed "
                               f"torch (CUDA {torch_cuda}) has kernels for {', '.join(arch_list)} only: run on "
                               "newer GPUs (accelerator_type), or install a torch built for this one")


def attention_backends(device):
    """On CUDA, scaled-dot-product attention without the cuDNN backend: it builds a graph (~35 ms of CPU on an H200,
    torch 2.11) for every new (batch, KV length) shape, and a decode step or a scoring batch is a new shape each
    time, so it tripled the decode step time (47 vs 16 ms, 0.5B and 8B alike). Flash and memory-efficient attention
    have no such setup. Elsewhere: no change."""
    import contextlib

    import torch

    if torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


@functools.cache
def cuda_available() -> bool:
    import torch

    check_gpu_driver()
    return torch.cuda.is_available()


def device_name(device: str | None = "auto") -> str:
    """The device a model runs on: `device` itself, or for auto (or none given) the GPU if this process sees one,
    else the CPU. A GPU on a node whose driver is too old for the installed torch is an error
    (`check_gpu_driver`), not a CPU run or a failure deep in CUDA init."""
    if device in (None, "", "auto"):
        return "cuda" if cuda_available() else "cpu"
    if device.startswith("cuda"):
        check_gpu_driver()
    return device


def dtype_name(dtype: str, device: str | None = None) -> str:
    """The dtype a model computes in: `dtype` itself, or what `auto` means on `device` (default: the GPU if this
    machine has one, else the CPU)."""
    if dtype != "auto":
        return dtype
    device = device_name(device)
    return "bfloat16" if device.startswith("cuda") or cpu_has_fast_bf16() else "float32"


__all__ = ["CUDA_MIN_DRIVER", "GPUDriverTooOld", "GPUNotUsable", "attention_backends", "check_gpu_driver", "check_gpu_node",
           "cpu_has_fast_bf16", "cuda_available", "device_name", "dtype_name", "nvidia_driver_version",
           "runs_kernels_for"]
