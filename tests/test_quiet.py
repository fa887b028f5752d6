"""A normal run prints prunelab's own progress and results: library lines that say nothing a user can act on are
silenced at their source. Imports are where the noisiest ones come from."""

import subprocess
import sys


def test_importing_the_training_stack_prints_nothing():
    """peft imports bitsandbytes, which on a CPU with AVX512-BF16 warns that it cannot fetch an optional 4-bit kernel
    from the hub (LoRA never uses it)."""
    done = subprocess.run([sys.executable, "-c", "import prunelab.recovery.train, prunelab.cli, peft, bitsandbytes"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""
