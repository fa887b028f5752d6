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


__all__ = ["CUDA_MIN_DRIVER", "GPUDriverTooOld", "check_gpu_driver", "cpu_has_fast_bf16", "cuda_available",
           "device_name", "dtype_name", "nvidia_driver_version"]
