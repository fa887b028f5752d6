"""A normal run prints prunelab's own progress and results: library lines that say nothing a user can act on are
silenced at their source. Imports are where the noisiest ones come from."""

import os
import re
import subprocess
import sys


def test_importing_the_training_stack_prints_nothing():
    """peft imports bitsandbytes, which on a CPU with AVX512-BF16 warns that it cannot fetch an optional 4-bit kernel
    from the hub (LoRA never uses it)."""
    done = subprocess.run([sys.executable, "-c", "import prunelab.recovery.train, prunelab.cli, peft, bitsandbytes"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""


def test_a_command_in_a_log_prints_its_own_lines_not_the_libraries_bars(tiny_model_dir, tmp_path):
    """stderr to a file, as under nohup or in CI: no 'Loading weights' or 'Writing model shards' carriage-return
    bars from transformers; prunelab's export line says what the step did."""
    log = tmp_path / "drop.log"
    with log.open("w") as err:
        done = subprocess.run([sys.executable, "-m", "prunelab", "drop", "--model", str(tiny_model_dir("llama")),
                               "--layers", "1", "--out", str(tmp_path / "pruned")], stdout=subprocess.PIPE,
                              stderr=err, text=True, timeout=300)
    assert done.returncode == 0
    text = log.read_text()
    assert "export pruned: 100%" in text and "\r" not in text
    assert "Loading weights" not in text and "Writing model shards" not in text


RAY_DRIVER = """
import sys, time
import numpy as np
import ray
from prunelab.distributed import connect

if sys.argv[1] == "prunelab":
    connect(None)
else:
    ray.init(address="local", log_to_driver=True)

@ray.remote(max_restarts=1)
class Child:
    def __init__(self, big):
        self.n = len(big)

    def size(self):
        return self.n

@ray.remote
class Parent:
    def start(self):
        # created by this actor, with constructor arguments in the object store and restarts allowed: the case
        # Ray's core worker logs at ERROR for every Ray Data and Ray Train actor
        self.child = Child.remote(np.zeros(400_000, dtype=np.uint8))
        print("", flush=True)
        print("parent says hello", flush=True)
        return ray.get(self.child.size.remote())

@ray.remote(num_cpus=0)
def cleaner_level():
    import logging
    return logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").getEffectiveLevel()

print("size", ray.get(Parent.remote().start.remote()), flush=True)
print("cleaner level", ray.get(cleaner_level.remote()), flush=True)
time.sleep(3)  # the log monitor forwards worker lines about once a second
ray.shutdown()
"""


def test_rays_own_noise_from_workers_is_dropped_and_their_lines_kept(tmp_path):
    """A driver that attaches through prunelab's connect prints a worker's lines, not Ray's 'constructor arguments
    in the object store and max_restarts > 0' error nor the blank line, and its workers run Ray Train's cleaner
    logger at ERROR; the same driver without it prints both lines, and its workers log that logger's warnings."""
    script = tmp_path / "driver.py"
    script.write_text(RAY_DRIVER)
    env = {**os.environ, "RAY_TMPDIR": "/tmp"}
    outputs = {}
    for mode in ("ray", "prunelab"):
        done = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=300,
                              env=env)
        assert done.returncode == 0, done.stderr
        outputs[mode] = done.stdout + done.stderr
        assert "size 400000" in outputs[mode] and "parent says hello" in outputs[mode]
    # Ray Train's cleaner's warnings are off at their logger in a worker of prunelab's own Ray (ERROR = 40)
    assert "cleaner level 40" in outputs["prunelab"] and "cleaner level 40" not in outputs["ray"]
    assert "max_restarts > 0" in outputs["ray"]  # the line is real: Ray prints it
    assert "max_restarts > 0" not in outputs["prunelab"]
    empty = re.compile(r"^\(\w+ pid=\d+\)\s*$", re.M)  # a worker's blank line, as the driver prints it
    assert empty.search(re.sub(r"\x1b\[[0-9;]*m", "", outputs["ray"]))
    assert not empty.search(re.sub(r"\x1b\[[0-9;]*m", "", outputs["prunelab"]))


def test_the_noise_patterns_match_the_lines_ray_printed_and_nothing_else():
    from prunelab.distributed.worker_logs import is_noise

    assert is_noise("[2026-12-07 04:56:53,729 E 7984 8017] core_worker.cc:2465: Actor with class name: "
                    "'PreemptionWatcher' and ID: 'afc04e70936e59da8b042c7301000000' has constructor arguments in the "
                    "object store and max_restarts > 0. If the arguments in the object store go out of scope or are "
                    "lost, the actor restart will fail. See https://github.com/ray-project/ray/issues/53727 for more "
                    "details.")
    assert is_noise("   ")
    assert not is_noise("[2026-12-07 04:56:53,729 E 7984 8017] core_worker.cc:812: The actor died unexpectedly")
    assert not is_noise("train: 50%|#####     | 2/4 loss=1.23")
