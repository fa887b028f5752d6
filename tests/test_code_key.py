"""Code in the stage key (prunelab.pipeline.code): the lock agrees with the code (else the author says whether the
change moves numbers), the digest ignores docstrings, comments and formatting but not code, a stage runs the modules
it imports (lazy registry entries included), and a bumped code version changes the pipeline's stage key."""

import hashlib
import json

from prunelab.pipeline.code import lock_differences, modules_of, normalized, stage_code
from prunelab.pipeline.plan import stage_key


def test_every_stages_code_is_as_the_lock_records():
    changed = lock_differences()
    assert not changed, (
        "the code these stages run changed since prunelab/pipeline/code_lock.json:\n  " + "\n  ".join(changed)
        + "\nIf a stage's numbers change, bump its code_version in prunelab/stages/registry.py; either way, then run "
          "`python -m prunelab.pipeline.code record`.")


def test_the_digest_ignores_docstrings_comments_and_layout_but_not_code():
    source = 'def f(x):\n    """Adds one."""\n    return x + 1  # one\n'
    assert normalized(source) == normalized('def f(x):\n    """Adds one, said otherwise."""\n\n    return (x +\n      1)\n')
    assert normalized(source) == normalized("def f(x):\n    return x + 1\n")
    assert normalized(source) != normalized("def f(x):\n    return x + 2\n")
    assert normalized(source) != normalized("def f(y):\n    return y + 1\n")


def test_a_stage_runs_what_it_imports_and_its_registries_entries():
    sweep = modules_of("prunelab.stages.sweep")
    assert {"prunelab.scoring.engine", "prunelab.generation.candidates", "prunelab.execution.noise",
            "prunelab.generation.hf", "prunelab", "prunelab.stages"} <= set(sweep)  # hf: a lazy registry entry
    assert "prunelab.recovery.train" not in sweep
    assert "prunelab.recovery.train" in modules_of("prunelab.stages.recover")
    assert stage_code("sweep") != stage_code("recover")


def test_a_bumped_code_version_changes_the_stage_key_and_version_one_adds_nothing():
    identity, upstream = {"model": "m", "tasks": ["arc_easy"]}, ["abc"]
    before_versions = hashlib.sha256(json.dumps({"kind": "sweep", "identity": identity, "upstream": upstream},
                                                sort_keys=True, default=str).encode()).hexdigest()
    assert stage_key("sweep", identity, upstream, code_version=1) == before_versions  # stored stages stay valid
    assert stage_key("sweep", identity, upstream, code_version=2) != before_versions
    assert stage_key("sweep", identity, upstream) == stage_key("sweep", identity, upstream, code_version=1)
