"""The wheels `bench/gpu_device_check.py` needs on the lent GPU machine, into `.device-wheels/` (git-ignored), under
the 64 MiB that travels with one call.

    python bench/device_wheels.py          # here, with package-registry access; prints each wheel and the total

That machine (../shared/FACTS.md) has Python 3.12, torch 2.11+cu130, transformers, peft, accelerate, pyarrow and
pandas, no network, and none of: pydantic, datasets, TRL, bitsandbytes, matplotlib (recovery writes its training
curve), pytest. The versions are those this checkout is tested with (this environment's, where it has them), for
CPython 3.12 on x86-64 Linux, without dependencies (the list is the closure beyond what that machine has).
bitsandbytes is cut to its CPU and CUDA 13.0 libraries (its wheel carries one per CUDA version). On the device:

    pip install --no-index --no-deps -q .device-wheels/*.whl && python bench/gpu_device_check.py --out $OUT/check.json
"""

import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".device-wheels"
LIMIT_MIB = 64
WHEELS = [
    # recovery: TRL and its datasets, with what datasets and its fsspec[http] import
    "trl", "datasets", "dill", "multiprocess", "xxhash", "fsspec", "aiohttp", "aiosignal", "frozenlist", "multidict",
    "yarl", "propcache", "attrs", "aiohappyeyeballs",
    # prunelab's configs
    "pydantic", "pydantic_core", "annotated-types", "typing-inspection",
    # QLoRA
    "bitsandbytes",
    # the training curve's figure
    "matplotlib", "contourpy", "cycler", "fonttools", "kiwisolver", "pyparsing",
    # the GPU tests
    "pytest", "pluggy", "iniconfig",
]
# the device's glibc is recent: every manylinux tag up to 2.34 runs there
PLATFORM = [arg for tag in ["manylinux2014_x86_64", *(f"manylinux_2_{v}_x86_64" for v in range(17, 35))]
            for arg in ("--platform", tag)] + ["--python-version", "3.12", "--implementation", "cp",
                                               "--only-binary=:all:", "--no-deps"]


def pinned(name: str) -> str:
    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return name


def cut_bitsandbytes(wheel: Path) -> Path:
    """The wheel without the native libraries of every CUDA but 13.0 (and the CPU's), its RECORD rewritten."""
    keep = lambda name: not name.endswith(".so") or "cuda130" in name or "cpu" in name  # noqa: E731
    out = wheel.with_suffix(".cut")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if not keep(item.filename):
                continue
            data = src.read(item.filename)
            if item.filename.endswith(".dist-info/RECORD"):
                lines = [line for line in data.decode().splitlines() if keep(line.split(",")[0])]
                data = ("\n".join(lines) + "\n").encode()
            dst.writestr(item, data)
    out.replace(wheel)
    return wheel


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", tmp, *PLATFORM,
                        *(pinned(n) for n in WHEELS)], check=True)
        for wheel in sorted(Path(tmp).glob("*.whl")):
            if wheel.name.startswith("bitsandbytes"):
                cut_bitsandbytes(wheel)
            wheel.replace(OUT / wheel.name)
    total = 0
    for wheel in sorted(OUT.glob("*.whl")):
        total += wheel.stat().st_size
        print(f"{wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
    print(f"{total / 2**20:7.2f} MiB in {OUT.relative_to(ROOT)} (limit {LIMIT_MIB} MiB per call)")
    return 0 if total < LIMIT_MIB * 2**20 else 1


if __name__ == "__main__":
    sys.exit(main())
