"""The reference in docs/ covers the command line as it is."""

import glob
import os
import re
import sys

import click

from jobs.cli import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def docs_text() -> str:
    return "\n".join(open(p).read() for p in sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))))


def test_every_command_and_option_appears_in_the_docs():
    text = docs_text()
    for name, command in cli.commands.items():
        assert f"deepfake {name}" in text, f"docs/ never mention `deepfake {name}`"
        for param in command.params:
            if isinstance(param, click.Option):
                for flag in param.opts + param.secondary_opts:
                    assert re.search(rf"`{re.escape(flag)}\b", text), (
                        f"docs/ never mention {flag} of `deepfake {name}`"
                    )


def test_the_command_line_reference_is_the_one_the_commands_make():
    sys.path.insert(0, os.path.join(ROOT, "docs"))
    try:
        from make_cli import render
    finally:
        sys.path.pop(0)
    with open(os.path.join(ROOT, "docs", "cli.md")) as f:
        assert f.read() == render(), "docs/cli.md is out of date: run python docs/make_cli.py"


def test_the_readme_opens_with_the_two_commands_and_its_links_lead_somewhere():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    first_block = readme.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme):
        assert os.path.exists(os.path.join(ROOT, target)), f"README links to missing {target}"
