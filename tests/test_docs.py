"""The README and docs/ stay true to the code: every import they show and every dotted fastwave name
they cite resolves, and the README's command-line summary uses only commands and flags that exist."""
import importlib
import pathlib
import re

import pytest

from fastwave.cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"^```(?:python)?\n(.*?)^```", text, flags=re.M | re.S)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_import_in_the_examples_resolves(page):
    imports = [line.strip() for block in _code_blocks(page.read_text()) for line in block.splitlines()
               if re.match(r"\s*from fastwave[\w.]* import |\s*import fastwave", line)]
    for line in imports:
        exec(line.split("#")[0], {})  # raises ImportError naming what moved


def _resolve(dotted: str):
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            value = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            value = getattr(value, name)
        return value
    raise ImportError(dotted)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_cited_fastwave_name_exists(page):
    text = re.sub(r"^## Modules that moved.*?(?=^## |\Z)", "", page.read_text(), flags=re.M | re.S)  # old names
    names = set(re.findall(r"`(fastwave(?:\.\w+)+)(?:\(\))?`", text))
    missing = []
    for name in sorted(names):
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert missing == []


def test_every_cited_file_exists():
    cited = set()
    for page in PAGES:
        cited |= set(re.findall(r"`((?:fastwave|tests|benchmarks|csrc|\.ci)/[\w./-]*\w)`", page.read_text()))
    missing = sorted(path for path in cited if not (ROOT / path).exists())
    assert missing == []


def test_the_readmes_command_line_summary_matches_the_parser():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"^## Command line\n\n```\n(.*?)^```", readme, flags=re.M | re.S).group(1)
    subparsers = next(action for action in build_parser()._actions if action.choices and "generate" in action.choices)
    commands, line_command = set(), None
    for line in block.splitlines():
        code = line.split("#")[0]
        match = re.match(r"fastwave (\S+)", code)
        if match:
            line_command = match.group(1)
        if line_command == "--version" or not code.strip():
            continue
        assert line_command in subparsers.choices, line_command
        commands.add(line_command)
        known = {flag for action in subparsers.choices[line_command]._actions for flag in action.option_strings}
        unknown = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", code)) - known
        assert unknown == set(), (line_command, unknown)
    assert commands == set(subparsers.choices)  # every command is in the summary
