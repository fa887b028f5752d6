"""Every shipped config validates as the stage its file names; bad configs and overrides get errors that name the
field; `prunelab.config` stays light."""

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from prunelab.config import (
    STAGE_CONFIGS,
    CompareConfig,
    CostConfig,
    EvalConfig,
    PruneConfig,
    load_config,
    parse_config,
    read_config_file,
)
from prunelab.errors import ConfigError

ROOT = Path(__file__).parent.parent
CONFIG_DIR = ROOT / "configs"
BASES = sorted((CONFIG_DIR / "base").glob("*.yaml"))  # partial configs that others extend
CONFIGS = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if p not in BASES)
BASE = {"name": "t", "model": {"name": "m"}, "tasks": [{"name": "arithmetic", "limit": 4}], "output_dir": "out"}
SWEEP = {**BASE, "kind": "sweep"}
RECOVER = {"kind": "recover", "name": "r", "model": {"name": "m"}, "corpus": "c", "output_dir": "out"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_shipped_configs_validate_as_the_stage_they_name(path):
    kind = read_config_file(path)["kind"]  # from the file, not its name
    config = load_config(path)
    assert type(config) is STAGE_CONFIGS[kind] and config.kind == kind
    # configs/ is laid out by stage; repro/ holds the pipelines that reproduce the paper
    assert path.parent.name in {"sweep": ["sweep"], "eval": ["eval"], "prune": ["prune"],
                                "compare-strategies": ["compare"], "sgr": ["sgr"], "recover": ["recover"],
                                "pipeline": ["pipeline", "repro"], "cost": ["cost"]}[kind]


def test_every_base_is_extended_and_inherited():
    for base in BASES:
        users = [p for p in CONFIGS if f"extends: ../base/{base.name}" in p.read_text()]
        assert users, f"{base.name} is extended by no config"
        inherited = [t["name"] for t in read_config_file(base)["tasks"]]
        for path in users:
            assert [t.name for t in load_config(path).tasks] == inherited, path


def test_a_config_for_another_stage_is_refused_with_its_kind():
    with pytest.raises(ConfigError, match="is a sweep config .*needs kind: eval"):
        load_config(CONFIG_DIR / "sweep" / "default.yaml", cls=EvalConfig)
    with pytest.raises(ConfigError, match="kind is 'sweeep'; allowed: sweep, eval, prune, compare-strategies, sgr, recover, pipeline, cost"):
        load_config(CONFIG_DIR / "sweep" / "default.yaml", ["kind=sweeep"], data={"kind": "sweeep"})


def test_extends_merges_mappings_and_replaces_the_rest(tmp_path):
    (tmp_path / "base.yaml").write_text("kind: sweep\ntasks: [{name: arithmetic}, {name: piqa}]\n"
                                        "ray: {actors: {num_actors: 4, num_cpus: 2}}\n")
    (tmp_path / "top.yaml").write_text("extends: base.yaml\nname: x\nmodel: {name: m}\noutput_dir: o\n"
                                       "tasks: [{name: gsm8k}]\nray: {actors: {num_actors: 1}}\n")
    config = load_config(tmp_path / "top.yaml")
    assert [t.name for t in config.tasks] == ["gsm8k"]
    assert (config.ray.actors.num_actors, config.ray.actors.num_cpus) == (1, 2)
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_config(tmp_path / "loop.yaml")


def test_importing_the_config_imports_no_heavy_library():
    code = ("import sys, prunelab.config, prunelab.tasks, prunelab.strategies, prunelab.generation\n"
            "print(sorted(m for m in ('torch', 'ray', 'vllm', 'trl', 'transformers', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "prunelab", "eval", "--tasks", "arithmetic", "--out", "x",
                          "model.dtype=int8"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "model.name: Field required" in out.stderr and "got 'int8'" in out.stderr


def test_configs_cover_the_papers_models():
    configs = [load_config(p) for p in CONFIGS]
    names = {(c.base_model if isinstance(c, CostConfig) else c.model).name for c in configs}
    assert {"qwen2.5-coder-0.5b-instruct", "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct",
            "mistralai/Mistral-7B-Instruct-v0.3", "google/gemma-2-2b-it"} <= names


def test_overrides_parse_values_and_indices():
    c = parse_config(SWEEP, ["tasks.0.limit=16", "ray.actors.num_gpus=0.25", "sweep.layers=[1, 2]"])
    assert c.tasks[0].limit == 16 and c.ray.actors.num_gpus == 0.25 and c.sweep.layers == [1, 2]
    with pytest.raises(ValidationError, match="frozen"):
        c.__setattr__("name", "x")
    both = parse_config({**SWEEP, "tasks": [{"name": "arithmetic"}, {"name": "piqa", "limit": 9}]}, ["tasks.*.limit=5"])
    assert [t.limit for t in both.tasks] == [5, 5]  # a.*.b: every item


def test_flags_set_config_keys_and_a_section_only_where_it_is(capsys):
    import yaml

    from prunelab.cli import main

    assert main(["eval", "--model", "m", "--tasks", "arithmetic,piqa", "--limit", "7", "--dtype", "float32",
                 "--out", "runs/x", "--check"]) == 0
    alone = yaml.safe_load(capsys.readouterr().out)
    assert alone["model"] == {**alone["model"], "name": "m", "dtype": "float32"} and alone["base_model"] is None
    assert [t["limit"] for t in alone["tasks"]] == [7, 7] and alone["name"] == "x"  # the name from --out
    assert main(["eval", "--model", "m", "--base", "b", "--tasks", "piqa", "--dtype", "float16", "--out", "runs/x",
                 "--name", "mine", "--check"]) == 0
    paired = yaml.safe_load(capsys.readouterr().out)
    assert paired["base_model"]["dtype"] == "float16" and paired["name"] == "mine"
    assert main(["prune", "--model", "m", "--strategy", "iterative", "--ratio", "0.25", "--selection-task",
                 "arithmetic", "--selection-seed", "3", "--out", "pruned/x", "--check"]) == 0
    chosen = yaml.safe_load(capsys.readouterr().out)["selection"]
    assert (chosen["name"], chosen["limit"], chosen["seed"]) == ("arithmetic", 32, 3)
    assert main(["prune", "--model", "m", "--layers", "1,x", "--out", "pruned/x", "--check"]) == 2
    assert "--layers: '1,x' is not a comma-separated list of integers" in capsys.readouterr().err
    assert main(["eval", "--model", "m", "--tasks", "piqa", "--limit", "many", "--out", "runs/x", "--check"]) == 2
    assert "--limit 'many': expected int" in capsys.readouterr().err


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
        parse_config(SWEEP, overrides)


def test_repeated_tasks_and_malformed_yaml(tmp_path):
    with pytest.raises(ConfigError, match="tasks repeated"):
        parse_config({**SWEEP, "tasks": [{"name": "arithmetic"}, {"name": "arithmetic"}]})
    with pytest.raises(ConfigError, match="tasks repeated"):
        parse_config({**BASE, "tasks": [{"name": "piqa"}, {"name": "piqa"}]}, cls=EvalConfig)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="it has no kind; set kind to one of sweep, eval"):
        parse_config(BASE)  # no silent default: a config says which stage it is, or its caller does
    with pytest.raises(ConfigError, match="kind is 'swep'; it must name a stage, one of sweep"):
        parse_config({**BASE, "kind": "swep"})
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_prune_config_needs_one_of_ratio_or_layers_and_what_the_strategy_needs():
    base = {"model": {"name": "m"}, "output_dir": "o"}
    assert parse_config({**base, "layers": [1, 2]}, cls=PruneConfig).layers == [1, 2]
    for extra, message in [({}, "either ratio .with strategy. or layers"),
                           ({"ratio": 0.25}, "ratio needs a strategy"),
                           ({"ratio": 0.25, "strategy": "sweep_score"}, "needs `sweep_dir`"),
                           ({"ratio": 1.25, "strategy": "reverse"}, r"ratio 1.25 outside \(0, 1\)"),
                           ({"layers": [1], "test_tasks": ["gsm8q"]}, "test_tasks: .*unknown task 'gsm8q'")]:
        with pytest.raises(ConfigError, match=message):
            parse_config({**base, **extra}, cls=PruneConfig)


def test_compare_config_rejects_bad_strategies_and_ratios():
    base = {**BASE, "strategies": ["reverse"]}
    with pytest.raises(ConfigError, match=r"strategies: .*unknown strategies \['shortgpt'\]; allowed: block_influence"):
        parse_config({**base, "strategies": ["shortgpt"]}, cls=CompareConfig)
    with pytest.raises(ConfigError, match=r"ratios: .*ratio 1.5 outside \(0, 1\)"):
        parse_config({**base, "ratios": [0.1, 1.5]}, cls=CompareConfig)
    with pytest.raises(ConfigError, match="strategy iterative needs `selection`"):
        parse_config({**base, "strategies": ["iterative"]}, cls=CompareConfig)


def test_statistics_and_grader_settings_are_checked_before_anything_runs():
    out = subprocess.run([sys.executable, "-m", "prunelab", "sweep", "configs/sweep/default.yaml", "stats.adjust=bonf",
                          "output_dir=never-written"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "stats.adjust" in out.stderr and "'holm' or 'bh'" in out.stderr
    assert not (ROOT / "never-written").exists()
    # kd.temperature never reaches TRL's GKD loss: without on-policy samples it would do nothing, so it is refused
    from prunelab.config import RecoverConfig, TaskSpec

    with pytest.raises(ValidationError, match="kd.temperature is 2, but with lmbda 0"):
        RecoverConfig.model_validate({**RECOVER, "method": "kd", "kd": {"temperature": 2.0}})
    kd = {**RECOVER, "method": "kd", "kd": {"temperature": 2.0, "lmbda": 0.5}}
    assert RecoverConfig.model_validate(kd).kd.temperature == 2
    # a grader that gsm8k does not have: the task's metrics are named

    with pytest.raises(ConfigError, match="tasks.gsm8k.metric is 'strict'; allowed: flexible_extract, strict_match"):
        TaskSpec(name="gsm8k", metric="strict").build()
    assert TaskSpec(name="gsm8k", metric="strict_match").build().primary_metric == "strict_match"
    assert "metric" not in TaskSpec(name="gsm8k").identity()  # unset: results written before it stay valid


@pytest.mark.parametrize("override, message", [
    ("stats.primary=mbpp", "stats.primary is 'mbpp'; allowed: generative, classification, arithmetic, arc_easy"),
    ("recover.seeds=[0, 1, 0]", "recover.seeds repeats ['0']"),
    ("recover.seeds=[]", "recover.seeds: List should have at least 1 item"),
    ("stats.equivalence_margin=0", "stats.equivalence_margin: Input should be greater than 0"),
])
def test_a_pipelines_statistics_are_checked_before_it_runs(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("configs/repro/qwen-coder.yaml", [override])
    assert message in str(err.value)


def test_a_methods_settings_given_for_another_method_and_unknown_methods_are_refused():
    from prunelab.config import RecoverConfig

    base = {"kind": "recover", "name": "r", "model": {"name": "m"}, "corpus": "c", "output_dir": "o"}
    with pytest.raises(ConfigError, match=r"recover.kd holds the settings of method kd, which this config does not "
                                          r"run \(it runs sft\)"):
        parse_config({**base, "kd": {"beta": 0.1}}, cls=RecoverConfig)
    with pytest.raises(ConfigError, match=r"unknown recovery method 'lora'; registered: sft, kd, partial, linear"):
        parse_config({**base, "method": "lora"}, cls=RecoverConfig)
    # linear with then: kd reads kd's settings; a dumped config (every section at its default) validates again
    linear = parse_config({**base, "method": "linear", "linear": {"then": "kd"}, "kd": {"beta": 0.1}},
                          cls=RecoverConfig)
    assert RecoverConfig.model_validate(linear.model_dump(mode="json")) == linear
    with pytest.raises(ConfigError, match="recover.partial holds the settings of method partial"):
        parse_config({**base, "method": "linear", "partial": {"layers": 3}}, cls=RecoverConfig)


def test_every_registered_method_has_a_label_and_a_module_that_runs_it():
    import importlib

    from prunelab.config import RecoverConfig
    from prunelab.recovery.registry import METHODS, arm_label

    recover = RecoverConfig.model_validate({"name": "r", "model": {"name": "m"}, "corpus": "c", "output_dir": "o"})
    for name, method in METHODS.items():
        assert arm_label(name, recover.model_dump(mode="json"))
        module = importlib.import_module(method.module)
        assert hasattr(module, "trainer") == method.trains, name


def test_a_strategys_settings_given_where_it_does_not_run_are_refused_naming_its_owner():
    base = {"model": {"name": "m"}, "output_dir": "o"}
    with pytest.raises(ConfigError, match=r"calibration is a setting of strategy block_influence and angular, which "
                                          r"this config does not run \(it runs reverse\)"):
        parse_config({**base, "strategy": "reverse", "ratio": 0.25, "calibration": {"samples": 8}}, cls=PruneConfig)
    with pytest.raises(ConfigError, match=r"keep_last is a setting of strategy reverse, .*\(it runs none"):
        parse_config({**base, "layers": [1], "keep_last": True}, cls=PruneConfig)
    with pytest.raises(ConfigError, match=r"unknown strategy 'shortgpt'; allowed: block_influence, angular"):
        parse_config({**base, "strategy": "shortgpt", "ratio": 0.25}, cls=PruneConfig)
    # each strategy is handed its own settings alone
    compare = parse_config({**BASE, "strategies": ["reverse", "block_influence"], "keep_last": True,
                            "calibration": {"samples": 8}}, cls=CompareConfig)
    assert compare.settings_for("reverse").model_dump() == {"keep_last": True}
    assert compare.settings_for("block_influence").model_dump() == {"calibration": compare.calibration.model_dump()}
    assert compare.model_validate(compare.model_dump(mode="json")) == compare  # a dumped config validates again


def test_the_probe_shows_the_three_shots_it_runs(tmp_path, capsys):
    """The arithmetic probe's prompt is fixed 3-shot: a config that leaves num_fewshot unset (or 0) shows 3 where it
    is printed and recorded, with the key it always had; any other count is refused."""
    from prunelab.cli import main
    from prunelab.config import TaskSpec

    assert TaskSpec(name="arithmetic").num_fewshot == TaskSpec(name="arithmetic", num_fewshot=0).num_fewshot == 3
    assert TaskSpec(name="arithmetic").identity() == TaskSpec(name="arithmetic", num_fewshot=3).identity()
    assert TaskSpec(name="piqa").num_fewshot == 0
    with pytest.raises(ValueError, match="fixed 3-shot"):
        TaskSpec(name="arithmetic", num_fewshot=5)
    assert main(["eval", "--model", "m", "--tasks", "arithmetic", "--out", str(tmp_path / "x"), "--check"]) == 0
    shown = capsys.readouterr().out
    assert "num_fewshot: 3" in shown and "num_fewshot: 0" not in shown


def test_the_prune_command_and_the_config_the_readme_calls_the_same_are_the_same(capsys):
    """README: the first `prunelab prune` line and `prunelab prune configs/prune/qwen-block-influence.yaml` choose
    the same model: every setting `--check` shows is equal but where it is written and what it is called."""
    from pathlib import Path

    from prunelab.cli import main

    readme = (Path(__file__).parent.parent / "README.md").read_text().replace("\\\n", " ")
    line = next(line for line in readme.splitlines() if line.startswith("prunelab prune --model")
                and "block_influence" in line)
    flags = line.split()[2:]
    shown = []
    for argv in (["prune", *flags, "--check"], ["prune", "configs/prune/qwen-block-influence.yaml", "--check"]):
        assert main(argv) == 0
        shown.append([row for row in capsys.readouterr().out.splitlines()
                      if not row.startswith(("name:", "output_dir:"))])
    assert shown[0] == shown[1]
