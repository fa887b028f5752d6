"""Every `prunelab ...` line of the README, as written: it parses, and a stage's config (file, flags and overrides)
validates (`--check`: nothing runs). A `prunelab submit` line validates the stage it submits the same way. Read in
order, no command reads a run or checkpoint directory that no earlier command writes."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from prunelab.cli import main, parse_args
from prunelab.stages.registry import STAGES

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = re.compile(r"^(?:\.venv/bin/)?(?:prunelab|python3? -m prunelab)\s")


def readme_commands() -> list[tuple[int, list[str]]]:
    """(line number, argv after `prunelab`) of each prunelab command in the README's code blocks, continuation
    lines joined and comments dropped; in a chain (`a && b`), each prunelab part."""
    commands, block, start, pending = [], False, 0, ""
    for number, line in enumerate((ROOT / "README.md").read_text().splitlines(), 1):
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


@pytest.mark.parametrize("argv", [argv for _, argv in COMMANDS], ids=[f"line{n}" for n, _ in COMMANDS])
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
                assert path.rstrip("/") in made, f"README line {line} reads {path}, which no earlier command writes"
        made |= {w.rstrip("/") for w in writes if w}
