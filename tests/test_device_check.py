"""bench/gpu_device_check.py, checked where it is written: its --smoke run on this machine finishes every section,
records each in the JSON, skips what needs a GPU by saying so, and finds what the GPU run will measure."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_device_check_runs_every_section_and_records_its_figures(tmp_path):
    out = tmp_path / "check.json"
    run = subprocess.run([sys.executable, "bench/gpu_device_check.py", "--smoke", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    report = json.loads(out.read_text())
    sections = report["sections"]
    assert list(sections) == ["environment", "gpu_tests", "agreement", "scorer_cudnn", "qlora_nccl"]
    assert run.returncode == 0, {k: v.get("error") for k, v in sections.items()}
    assert all(s["ok"] for s in sections.values())
    assert sections["environment"]["torch"] == torch.__version__
    if not torch.cuda.is_available():
        assert sections["gpu_tests"] == {"ok": True, "skipped": "no GPU", "section_seconds": 0.0}
        assert sections["scorer_cudnn"]["skipped"] == "no GPU"
        assert "GPUNotUsable" in sections["environment"]["gpu_node_check"]
    # the resumed engine against plain layer removal: the same scores here, exactly (bf16 on this CPU)
    scores = sections["agreement"]["scores"]
    assert scores and all(s["max_abs_logprob_diff"] < 1e-2 and s["answers_differ"] == 0 for s in scores)
    assert all(0 <= g["equal"] <= g["of"] == 16 for g in sections["agreement"]["generation"])
    qlora = sections["qlora_nccl"]
    assert qlora["merged_layers"] == 3 and not qlora["quantization_config_in_merged"]
    assert qlora["training"]["steps"] == 4 and qlora["process_group"] == ("nccl" if torch.cuda.is_available()
                                                                         else "gloo")
