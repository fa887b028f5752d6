"""The node's NVIDIA driver against the CUDA the installed torch needs: an old driver is one clear error, never a CPU
run nor a failure deep in CUDA init."""

import pytest

from prunelab.hardware import GPUDriverTooOld, check_gpu_driver, nvidia_driver_version

# /proc/driver/nvidia/version as the proprietary and the open kernel modules write it
PROPRIETARY = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n"
               "GCC version:  gcc version 11.4.0 (Ubuntu 11.4.0-1ubuntu1~22.04)\n")
OPEN = ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  (dvs-builder@U16)  "
        "Sun Jul 27 07:09:40 UTC 2025\nGCC version:  gcc version 13.3.0\n")


def test_the_loaded_drivers_version_is_read_from_either_kernel_module(tmp_path):
    for text, version in [(PROPRIETARY, "535.183.01"), (OPEN, "580.65.06")]:
        (tmp_path / "version").write_text(text)
        assert nvidia_driver_version(str(tmp_path / "version")) == version
    assert nvidia_driver_version(str(tmp_path / "absent")) is None


def test_a_driver_too_old_for_torchs_cuda_is_refused_with_what_to_do():
    with pytest.raises(GPUDriverTooOld, match=r"driver is 535.183.01, but the installed torch is built for CUDA 13.0, "
                                              r"which needs driver 580.65.06 or newer \(R580\+\).*GPU hosts and "
                                              r"drivers"):
        check_gpu_driver("13.0", "535.183.01")
    with pytest.raises(GPUDriverTooOld, match="needs driver 525.60.13"):
        check_gpu_driver("12.8", "470.256.02")


@pytest.mark.parametrize("cuda, driver", [("13.0", "580.65.06"), ("13.0", "590.44.01"), ("12.8", "535.183.01"),
                                          ("12.4", "580.65.06"), (None, "470.1"), ("13.0", None)])
def test_a_driver_that_runs_torchs_cuda_or_no_gpu_at_all_passes(cuda, driver):
    check_gpu_driver(cuda, driver)  # a CPU torch (None), or no driver here (None: this machine's, if any)


@pytest.mark.parametrize("device, gpus, where", [("cpu", 0, None), ("cuda", 1, {"": "cuda"}), ("cuda", 2, "balanced"),
                                                 ("cuda:1", 2, {"": "cuda:1"})])
def test_weights_load_straight_onto_the_gpus_a_worker_holds(device, gpus, where):
    """One GPU: the checkpoint loads onto it (no host copy first); an actor that sees several (num_gpus > 1): its
    layers are spread evenly over all of them; a named device: that one; the CPU: the plain load."""
    from prunelab.models.loading import device_map

    assert device_map(device, gpus) == where


CUDA13_ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


@pytest.mark.parametrize("capability, runs", [((9, 0), True), ((8, 9), True), ((7, 5), True), ((7, 0), False),
                                              ((6, 1), False), ((12, 1), True)])
def test_torch_runs_kernels_for_a_gpu_by_its_arch_list(capability, runs):
    from prunelab.hardware import runs_kernels_for

    assert runs_kernels_for(capability, CUDA13_ARCHS) is runs
    assert runs_kernels_for((9, 0), ["sm_90a"])  # the arch-specific variant
    assert not runs_kernels_for((8, 0), ["sm_86"])  # a newer minor of the same major: no kernels for the older


def test_a_gpu_node_that_cannot_run_gpu_work_is_refused_with_the_reason():
    from prunelab.hardware import GPUNotUsable, check_gpu_node

    good = {"torch_cuda": "13.0", "driver": "580.65.06", "arch_list": CUDA13_ARCHS}
    check_gpu_node(available=True, capabilities=[(9, 0), (9, 0)], **good)
    with pytest.raises(GPUNotUsable, match="sees no GPU: a container without GPU access"):
        check_gpu_node(available=False, **good)  # the host's driver file is there, the GPU is not
    with pytest.raises(GPUNotUsable, match=r"GPU 1 has compute capability 7.0, but the installed torch \(CUDA 13.0\) "
                                           r"has kernels for sm_75"):
        check_gpu_node(available=True, capabilities=[(9, 0), (7, 0)], **good)  # a V100 beside an H100
    with pytest.raises(GPUNotUsable, match="is a CPU build"):
        check_gpu_node(available=True, capabilities=[(9, 0)], **{**good, "torch_cuda": ""})
    with pytest.raises(GPUDriverTooOld):
        check_gpu_node(available=True, capabilities=[(9, 0)], **{**good, "driver": "535.183.01"})
