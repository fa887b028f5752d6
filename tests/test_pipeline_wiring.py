"""The pipeline's wiring is derived, not re-spelled: every field of every stage config it plans is set from the
pipeline's config, taken from an upstream artifact (`StageEntry.inputs`), or left at its default on purpose
(`plan.AT_DEFAULT`, each with its reason). A field added to a stage config in none of these fails here, instead of
silently running at its default outside the stage key."""

import pytest

from prunelab.config import load_config
from prunelab.config.sections import METHOD_SECTIONS, STRATEGY_SETTINGS
from prunelab.pipeline.plan import AT_DEFAULT, plan_pipeline
from prunelab.recovery.registry import METHODS, runs
from prunelab.stages.registry import STAGES
from prunelab.strategies.registry import STRATEGIES

EVERY_STAGE = ["recover.methods=[sft, kd, partial, linear]", "recover.linear.then=sft", "cost={}",
               "prune.strategies=[block_influence, iterative]",
               "prune.selection={name: arithmetic, limit: 8, seed: 7}",
               "recover.targets=[block_influence@0.25, iterative@0.25]"]


def unread(stage) -> set[str]:
    """Sections of the methods (recover) or strategies (prune) a stage does not run: they must stay at their
    defaults, which the stage config itself enforces (it refuses them otherwise)."""
    if stage.kind == "recover":
        used = {METHODS[m].section for m in runs({stage.config.method}, stage.config)}
        return set(METHOD_SECTIONS) - used
    if stage.kind == "prune":
        return set(STRATEGY_SETTINGS) - set(STRATEGIES.entry(stage.config.strategy).settings)
    return set()


def test_every_stage_config_field_is_set_taken_from_upstream_or_left_at_its_default_on_purpose():
    stages = plan_pipeline(load_config("configs/repro/qwen-coder.yaml", EVERY_STAGE))
    assert {s.kind for s in stages} == {"eval", "sweep", "compare-strategies", "cost", "sgr", "prune", "recover"}
    for stage in stages:
        fields = set(type(stage.config).model_fields) - {"kind", "output_dir"}
        inputs = {given.field for given in STAGES.get(stage.kind).inputs}
        on_purpose = set(AT_DEFAULT.get(stage.kind, {})) - stage.fields
        missing = fields - stage.fields - inputs - on_purpose - unread(stage)
        assert not missing, f"{stage.name}: {sorted(missing)} neither set by the pipeline nor taken from upstream"
        for name in on_purpose | unread(stage):
            assert getattr(stage.config, name) == type(stage.config).model_fields[name].default, (stage.name, name)


def test_each_arm_and_checkpoint_gets_the_sections_it_reads_whole():
    config = load_config("configs/repro/qwen-coder.yaml", [*EVERY_STAGE, "recover.kd.beta=0.1",
                                                          "recover.training.max_steps=3", "sgr.prompts.limit=7"])
    stages = {s.name: s for s in plan_pipeline(config)}
    assert stages["recover-block_influence@0.25-kd"].config.kd.beta == 0.1
    assert stages["recover-block_influence@0.25-sgr"].config.kd == type(config.recover.kd)()  # not its method's
    assert all(s.config.training.max_steps == 3 for s in stages.values() if s.kind == "recover")
    assert stages["sgr"].config.prompts.limit == 7
    # the iterative strategy's rounds generate as the pipeline does; block_influence does not read generation
    assert stages["prune-iterative@0.25"].config.generation == config.generation
    assert "generation" not in stages["prune-block_influence@0.25"].fields


@pytest.mark.parametrize("kind", sorted(AT_DEFAULT))
def test_what_the_pipeline_leaves_at_default_are_fields_of_that_stage(kind):
    assert set(AT_DEFAULT[kind]) <= set(STAGES.get(kind).config.model_fields)
