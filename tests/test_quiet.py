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
