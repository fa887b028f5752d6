"""Every shipped config validates; bad configs and overrides get errors that name the field."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from prunelab.config import SweepConfig, load_config, parse_config
from prunelab.errors import ConfigError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
BASE = {"name": "t", "model": {"name": "m"}, "tasks": [{"name": "arithmetic", "limit": 4}], "output_dir": "out"}


def config_class(path: Path):
    from prunelab.compare import CompareConfig

    return CompareConfig if path.name.startswith("compare-") else SweepConfig


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cls = config_class(path)
    assert isinstance(load_config(path, cls=cls), cls)


def test_configs_cover_the_papers_models():
    names = {load_config(p, cls=config_class(p)).model.name for p in CONFIGS}
    assert {"qwen2.5-coder-0.5b-instruct", "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct",
            "mistralai/Mistral-7B-Instruct-v0.3", "google/gemma-2-2b-it"} <= names


def test_overrides_parse_values_and_indices():
    c = parse_config(BASE, ["tasks.0.limit=16", "ray.actors.num_gpus=0.25", "sweep.layers=[1, 2]"])
    assert c.tasks[0].limit == 16 and c.ray.actors.num_gpus == 0.25 and c.sweep.layers == [1, 2]
    with pytest.raises(ValidationError, match="frozen"):
        c.__setattr__("name", "x")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.nmae=x"], r"model.nmae: unknown key"),
        (["model.dtype=int8"], r"model.dtype: .*'auto'.*got 'int8'"),
        (["tasks.0.name=hellaswagg"], r"tasks.0.name: .*unknown task 'hellaswagg'"),
        (["tasks.0.limit=0"], r"tasks.0.limit: .*greater than or equal to 1"),
        (["ray.actors.num_cpus=0"], r"ray.actors.num_cpus: .*greater than 0"),
        (["tasks.3.limit=1"], r"tasks.3 is not an index of a list of 1"),
        (["limit"], r"not of the form a.b=value"),
        (["name.x=1"], r"name is a value, not a section"),
    ],
)
def test_bad_config_names_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(BASE, overrides)


def test_repeated_tasks_and_malformed_yaml(tmp_path):
    with pytest.raises(ConfigError, match="tasks repeated"):
        parse_config({**BASE, "tasks": [{"name": "arithmetic"}, {"name": "arithmetic"}]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_compare_config_rejects_bad_strategies_and_ratios():
    from prunelab.compare import CompareConfig

    base = {**BASE, "strategies": ["reverse"]}
    with pytest.raises(ConfigError, match=r"strategies: .*unknown strategies \['shortgpt'\]; allowed: block_influence"):
        parse_config({**base, "strategies": ["shortgpt"]}, cls=CompareConfig)
    with pytest.raises(ConfigError, match=r"ratios: .*\[1.5\] are outside \(0, 1\)"):
        parse_config({**base, "ratios": [0.1, 1.5]}, cls=CompareConfig)
    with pytest.raises(ConfigError, match="strategy iterative needs `selection`"):
        parse_config({**base, "strategies": ["iterative"]}, cls=CompareConfig)
