"""Every command in a ```bash block of README.md and docs/*.md is one the CLI accepts: harness commands
are parsed by the real parser (the cheap ones run: --help, ls, reproduce --list, dry runs of the toy
suite), scripts and files they name exist; the quick start's smoke run runs (slow). The adding-an-adapter
example registers and collides with no test fixture (issue 34)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.cli.parser import build_parser
from harness.errors import HarnessError

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def bash_commands() -> list[tuple[str, str]]:
    """(file, command) for every command line of every ```bash block; continuations joined, comments cut."""
    out = []
    for path in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                if line and not line.startswith("#"):
                    out.append((path.name, line))
    return out


def harness_argvs(command: str) -> list[list[str]]:
    """The argv(s) of a ``python -m harness ...`` line: ``a|b|c`` alternatives expanded, ``[--json]`` kept."""
    words = shlex.split(command.replace("[", "").replace("]", ""))
    words = words[words.index("harness") + 1:]
    argvs: list[list[str]] = [[]]
    for word in words:
        options = word.split("|") if "|" in word and not word.startswith("-") else [word]
        argvs = [argv + [o] for argv in argvs for o in options]
    return argvs


COMMANDS = bash_commands()


def test_the_docs_have_commands_and_the_readme_is_short():
    assert len(COMMANDS) >= 20
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) < 200


@pytest.mark.parametrize("where,command", COMMANDS, ids=[f"{w}:{c[:60]}" for w, c in COMMANDS])
def test_every_documented_command_is_valid(where, command, capsys):
    if "-m harness" in command:
        for argv in harness_argvs(command):
            try:
                args = build_parser().parse_args(argv)
            except SystemExit as exc:  # --help
                assert exc.code == 0, (where, command)
                continue
            except HarnessError as exc:
                pytest.fail(f"{where}: `{command}` does not parse: {exc}")
            if args.command == "ls" or (args.command == "reproduce" and getattr(args, "list", False)):
                assert main(argv) == 0, (where, command, capsys.readouterr().err)
        return
    words = shlex.split(command)
    if words[:2] == ["streamlit", "run"]:
        assert (ROOT / words[2]).is_file()
    elif words[0] == "bash":
        assert (ROOT / words[1]).is_file()
    elif words[:2] == ["python", "bench"] or (words[0] == "python" and words[1].startswith("bench/")):
        assert (ROOT / words[1]).is_file()
    elif words[:3] == ["python", "-m", "pytest"]:
        assert (ROOT / "tests").is_dir()
    elif words[0] in ("python3", "ray"):
        pass  # the venv line of the install step; ray's own CLI
    else:
        pytest.fail(f"{where}: a command this test does not know how to check: {command}")


def test_the_documented_links_exist():
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
            if not target.startswith("http"):
                assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


def test_the_adding_an_adapter_example_registers_without_colliding_with_a_fixture():
    from harness.registry import ADAPTERS
    from tests.fixture_adapters import FIXTURE_ADAPTERS

    text = (ROOT / "docs" / "adding-an-adapter.md").read_text(encoding="utf-8")
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    name = re.search(r'register_adapter\("([^"]+)"\)', code).group(1)
    assert name not in FIXTURE_ADAPTERS and name not in ADAPTERS.names()
    try:
        exec(compile(code, "adding-an-adapter.md", "exec"), {})
        assert ADAPTERS.get(name).config_cls.__name__ == "LowRankConfig"
    finally:
        ADAPTERS.unregister(name)


@pytest.mark.slow
def test_the_quick_start_smoke_run_runs(tmp_path, monkeypatch):
    smoke = next(c for w, c in COMMANDS if w == "README.md" and "--max-train-samples" in c and "run" in c)
    argv = [a.replace("../shared/data", str(ROOT.parent / "shared" / "data")) for a in harness_argvs(smoke)[0]]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARNESS_RESULTS_DIR", raising=False)
    assert main(argv + ["--no-progress"]) == 0
    assert len(list((tmp_path / "runs" / "glue" / "rte").glob("*.json"))) == 2
