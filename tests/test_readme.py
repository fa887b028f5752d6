"""Every `prunelab ...` line of the README, as written: it parses, and a stage's config (file, flags and overrides)
validates (`--check`: nothing runs). A `prunelab submit` line validates the stage it submits the same way. Read in
order, no command reads a run or checkpoint directory that no earlier command writes."""

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from prunelab.cli import main, parse_args
from prunelab.stages.registry import STAGES

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = re.compile(r"^(?:\.venv/bin/)?(?:prunelab|python3? -m prunelab)\s")


# the README, then the pages its reference sections moved to that show commands (read in this order)
PAGES = ("README.md", "docs/cluster.md")


def readme_commands() -> list[tuple[str, list[str]]]:
    """(page:line, argv after `prunelab`) of each prunelab command in the code blocks of the README and its pages,
    continuation lines joined and comments dropped; in a chain (`a && b`), each prunelab part."""
    return [(f"{page}:{line}", argv) for page in PAGES for line, argv in _page_commands(ROOT / page)]


def _page_commands(path: Path) -> list[tuple[int, list[str]]]:
    commands, block, start, pending = [], False, 0, ""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            block, pending = not block, ""
            continue
        if not block:
            continue
        if not pending:
            start = number
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        for part in re.split(r"\s&&\s", pending):
            part = part.strip()
            if PROGRAM.match(part):
                words = shlex.split(part, comments=True)
                at = next(i for i, w in enumerate(words) if w.endswith("prunelab"))
                commands.append((start, words[at + 1:]))
        pending = ""
    return commands


COMMANDS = readme_commands()


def test_the_readme_has_the_commands_a_user_starts_from():
    names = {argv[0] for _, argv in COMMANDS if argv}
    assert set(STAGES.names()) <= names  # every stage has an example
    assert ["sweep", "configs/sweep/default.yaml"] in [argv for _, argv in COMMANDS]  # the README's first command


@pytest.mark.parametrize("argv", [argv for _, argv in COMMANDS], ids=[where for where, _ in COMMANDS])
def test_each_readme_command_parses_and_its_config_validates(argv, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # config paths are relative to the repository, as a user runs them
    args = parse_args(argv)  # argparse exits (SystemExit 2) on an unknown flag or a missing argument
    stage = args.stage if args.command == "submit" else args.command
    if stage not in STAGES:
        return  # drop, report, samples, models: parsed is all that can be checked without running
    stage_argv = [stage, *args.job_args] if args.command == "submit" else argv
    code = main([*stage_argv, "--check"])
    assert code == 0, capsys.readouterr().err
    assert "output_dir:" in capsys.readouterr().out


def _reads_and_writes(argv: list[str], capsys) -> tuple[list[str], list[str]]:
    """The run and checkpoint directories a README command reads and writes."""
    args = parse_args(argv)
    if args.command in STAGES:
        assert main([*argv, "--check"]) == 0
        config = yaml.safe_load(capsys.readouterr().out)
        reads = [(config.get(k) or {}).get("name") for k in ("model", "base_model")]
        reads += [m["name"] for m in config.get("models") or []] + [config.get("sweep_dir"), config.get("corpus")]
        writes = [config["output_dir"]] + ([f"{config['output_dir']}/merged"] if args.command == "recover" else [])
        return reads, writes
    if args.command == "drop":
        return [args.model], [args.out]
    if args.command == "report":
        return list(args.dirs), [args.out] if args.out else []
    if args.command == "samples":
        return [args.dir], []
    return [], []  # models; submit's paths are the cluster's storage (/data/...)


def test_the_readme_reads_only_what_an_earlier_command_made(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    made: set[str] = set()
    for line, argv in COMMANDS:
        reads, writes = _reads_and_writes(argv, capsys)
        for path in reads:
            if path and path.startswith(("runs/", "pruned/")):
                assert path.rstrip("/") in made, f"{line} reads {path}, which no earlier command writes"
        made |= {w.rstrip("/") for w in writes if w}


SUBMIT_SOURCES = [*PAGES, "cluster/runtime_env.yaml", "cluster/kuberay-raycluster.yaml", "ray-cluster.yaml",
                  *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "jobs").glob("*.py"))]


def ray_job_submit_lines() -> list[tuple[str, str]]:
    """(where, command) of every `ray job submit` the user is shown: README code blocks, job docstrings, cluster
    file comments; continuation lines joined."""
    found = []
    for source in SUBMIT_SOURCES:
        pending = ""
        for line in (ROOT / source).read_text().splitlines():
            line = re.sub(r"^\s*#\s?", "", line) if not source.endswith(".md") else line
            pending += line.strip()
            if pending.endswith("\\"):
                pending = pending.rstrip("\\").rstrip() + " "
                continue
            if pending.startswith("ray job submit") and "..." not in pending:
                found.append((source, pending))
            pending = ""
    return found


SUBMITS = ray_job_submit_lines()


def test_every_ray_job_submit_shown_is_one_ray_accepts(monkeypatch):
    """Each as a user pastes it: Ray's own CLI parses its flags, and its runtime env arguments (one of
    --runtime-env and --runtime-env-json, never both: Ray refuses the pair) make a valid runtime env."""
    from ray.dashboard.modules.dashboard_sdk import parse_runtime_env_args
    from ray.dashboard.modules.job.cli import submit as ray_job_submit

    from prunelab.distributed.submit import runtime_env_of

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert len(SUBMITS) >= 10 and any("--runtime-env-json" in c for _, c in SUBMITS)
    for where, command in SUBMITS:
        # the shell's part first: $(prunelab runtime-env --env NAME) is what the README pipes in
        command = re.sub(r'"\$\(prunelab runtime-env --env (\w+)\)"',
                         lambda m: shlex.quote(json.dumps(runtime_env_of(env_vars={m.group(1): "hf_test"}))), command)
        words = shlex.split(command)[3:]
        context = ray_job_submit.make_context("submit", words)  # click raises on an unknown flag
        params = context.params
        env = parse_runtime_env_args(runtime_env=params["runtime_env"], runtime_env_json=params["runtime_env_json"],
                                     working_dir=params["working_dir"])
        assert env["working_dir"] == ".", where
        assert (ROOT / params["entrypoint"][1]).exists(), f"{where}: {command}"
        if params["runtime_env_json"]:
            assert env["env_vars"]["HF_TOKEN"] == "hf_test" and env["excludes"], where
    with pytest.raises(ValueError, match="Only one of"):  # what the README used to say, refused by Ray itself
        parse_runtime_env_args(runtime_env="cluster/runtime_env.yaml", runtime_env_json='{"env_vars": {}}')
