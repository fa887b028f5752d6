"""The cache key from the fields' own markers: every config field says whether it belongs to the key, and
changing a field changes exactly the identities its marker says; `dtype: auto` enters the key as what it computes in
on this machine."""

from typing import Literal, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError
from test_config import CONFIGS, read_config_file

from prunelab.config import EXTENT, KEY, SETTING, STAGE_CONFIGS, Frozen, load_config, role_of
from prunelab.hardware import dtype_name


def _models(cls, seen=None) -> set[type]:
    """Every config model reachable from `cls` through its fields."""
    seen = set() if seen is None else seen
    if cls in seen:
        return seen
    seen.add(cls)
    for info in cls.model_fields.values():
        stack = [info.annotation]
        while stack:
            t = stack.pop()
            if isinstance(t, type) and issubclass(t, BaseModel):
                _models(t, seen)
            stack.extend(get_args(t))
    return seen


ALL_MODELS = sorted(set().union(*(_models(c) for c in STAGE_CONFIGS.values())), key=lambda c: c.__name__)


def test_every_config_field_says_whether_it_belongs_to_the_key():
    unmarked = [f"{cls.__name__}.{name}" for cls in ALL_MODELS for name, info in cls.model_fields.items()
                if role_of(info) not in (KEY, EXTENT, SETTING)]
    assert unmarked == []
    assert all(issubclass(cls, Frozen) for cls in ALL_MODELS)
    assert len(ALL_MODELS) >= 20  # the walk reached the sections, not only the stage configs


RANK = {SETTING: 0, EXTENT: 1, KEY: 2}


def _leaves(model: Frozen, path=(), outer=KEY):
    """(path, field info, value, role) of every scalar field, walking into sections (and lists of them); a field's
    role is the weakest along its path (a key field of a section held as a setting is a setting)."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        role = min(outer, role_of(info), key=RANK.get)
        if isinstance(value, Frozen):
            yield from _leaves(value, (*path, name), role)
        elif isinstance(value, list) and value and all(isinstance(v, Frozen) for v in value):
            yield from _leaves(value[0], (*path, name, 0), role)
        else:
            yield (*path, name), info, value, role


def _candidates(info, value):
    """Other values a field may take: every other choice of a Literal, a flipped bool, a larger number, a longer
    string, another list of numbers."""
    annotation = info.annotation
    choices = [a for t in (annotation, *get_args(annotation)) if get_origin(t) is Literal for a in get_args(t)]
    if choices:
        return [c for c in choices if c != value]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value * 2 + 3]
    if isinstance(value, float):
        return [value / 2, value * 2, value + 0.25]
    if isinstance(value, str):
        return [value + "-other", "other"]
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return [[*value, value[-1] / 2 if isinstance(value[-1], float) else value[-1] + 1]]
    return []


def _changed(data: dict, path: tuple, value) -> dict:
    import copy

    data = copy.deepcopy(data)
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
    node[path[-1]] = value
    return data


def _same_after_resolving(path: tuple, old, new, config=None) -> bool:
    """Values that resolve to the same computation on this machine (dtype auto vs what auto means here), and the
    section of a recovery method that the config does not run."""
    from prunelab.config.sections import METHOD_SECTIONS, RecoverSection

    for i, part in enumerate(path):
        section = config
        for p in path[:i]:
            section = getattr(section, p, None) if isinstance(p, str) else None
        if isinstance(section, RecoverSection) and part in METHOD_SECTIONS and part not in section.methods_used():
            return True
    if path[-1] == "num_fewshot":  # the arithmetic probe runs 3-shot whatever is asked (0 or 3)
        return {old, new} == {0, 3}
    if path[-1] == "dtype":
        return dtype_name(old) == dtype_name(new)
    if path[-1] == "quantization":
        from prunelab.config.sections import resolved_quantization

        return resolved_quantization(old) == resolved_quantization(new)
    return False


# one shipped config per stage kind, its sections filled in
EXAMPLES = {}
for _path in CONFIGS:
    EXAMPLES.setdefault(read_config_file(_path)["kind"], _path)


@pytest.mark.parametrize("kind", sorted(STAGE_CONFIGS))
def test_changing_a_field_changes_exactly_the_identities_its_marker_names(kind):
    config = load_config(EXAMPLES[kind])
    data = config.model_dump(mode="json")
    cls = type(config)
    tried = 0
    for path, info, value, role in _leaves(config):
        for other in (c for c in _candidates(info, value) if c != value):
            try:
                changed = cls.model_validate(_changed(data, path, other))
            except ValidationError:
                continue  # not a valid value there (a task name, a constraint): try the next
            same = _same_after_resolving(path, value, other, config)
            claim_changes = changed.identity() != config.identity()
            stage_changes = changed.stage_identity() != config.stage_identity()
            where = f"{kind}: {'.'.join(map(str, path))} ({role}) {value!r} -> {other!r}"
            assert claim_changes == (role == KEY and not same), where
            assert stage_changes == (role in (KEY, EXTENT) and not same), where
            tried += 1
            break
    assert tried >= 5, f"{kind}: only {tried} fields could be changed"


def test_dtype_auto_enters_the_key_as_what_it_computes_in_here():
    config = load_config(EXAMPLES["eval"])
    data = config.model_dump(mode="json")
    auto = type(config).model_validate(_changed(data, ("model", "dtype"), "auto"))
    here = dtype_name("auto")
    other = {"bfloat16": "float32", "float32": "bfloat16"}[here]
    assert auto.identity()["model"]["dtype"] == here
    assert auto.identity() == type(config).model_validate(_changed(data, ("model", "dtype"), here)).identity()
    assert auto.identity() != type(config).model_validate(_changed(data, ("model", "dtype"), other)).identity()


def test_the_pipeline_sections_are_the_stage_configs_own():
    """Defaults exist once: every field a pipeline section shares with its stage config has the same default."""
    from prunelab.config import (
        CostConfig,
        PipelineConfig,
        PipelineCost,
        PipelinePrune,
        PipelineRecover,
        PipelineSGR,
        PruneConfig,
        RecoverConfig,
        SGRConfig,
        SweepConfig,
    )

    pairs = [(PipelineCost, CostConfig), (PipelineSGR, SGRConfig), (PipelineRecover, RecoverConfig),
             (PipelinePrune, PruneConfig)]
    for section, stage in pairs:
        # a pipeline section says more than one stage does: several responses, its own pairing, what it sweeps
        shared = set(section.model_fields) & set(stage.model_fields) - {"paired", "responses", "sweep"}
        assert shared, section
        for name in shared:
            assert section.model_fields[name].default == stage.model_fields[name].default, (section, name)
    assert PipelineConfig.model_fields["generation"].annotation is SweepConfig.model_fields["generation"].annotation


def test_a_strategys_key_holds_its_own_settings_alone():
    """A pipeline pruning with block_influence and reverse: reverse's knob reaches reverse's prune stage only, so
    changing it leaves block_influence's checkpoint (and its key) as it was; compare runs both and changes."""
    from prunelab.pipeline.plan import plan_pipeline

    def stages(*overrides):
        config = load_config("configs/repro/qwen-coder.yaml", ["prune.strategies=[block_influence, reverse]",
                                                               "recover.targets=[block_influence@0.25, reverse@0.25]",
                                                               *overrides])
        return {s.name: s for s in plan_pipeline(config)}

    before, after = stages(), stages("prune.keep_last=true")
    assert after["prune-reverse@0.25"].config.settings_for("reverse").keep_last is True
    assert after["prune-reverse@0.25"].key != before["prune-reverse@0.25"].key
    assert after["prune-block_influence@0.25"].key == before["prune-block_influence@0.25"].key
    assert after["compare"].key != before["compare"].key
    calibrated = stages("prune.calibration.samples=16")
    assert calibrated["prune-reverse@0.25"].key == before["prune-reverse@0.25"].key
    assert calibrated["prune-block_influence@0.25"].key != before["prune-block_influence@0.25"].key
