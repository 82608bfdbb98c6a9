"""The README says what the code does: its configuration table lists every `diffamp serve` flag with its
environment variable, its CLI section every client command, and the files it points at exist."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from diffamp import cli
from diffamp_server.config import ServerConfig

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def _config_rows() -> dict[str, str]:
    """flag -> the env cell, from the Configuration table (a row may name two flags: `--a` / `--b`)."""
    rows = {}
    for line in _section("Configuration").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`--"):
            flags = re.findall(r"`(--[a-z0-9-]+)`", cells[0])
            envs = re.findall(r"`([A-Z_][A-Z0-9_]*)`", cells[1])
            assert len(flags) == len(envs), f"README row {line!r}: one env variable per flag"
            rows.update(zip(flags, envs))
    return rows


def test_the_configuration_table_lists_every_flag_with_its_environment_variable():
    rows = _config_rows()
    expected = {"--" + f.name.replace("_", "-"): f.metadata["env"] for f in fields(ServerConfig)}
    assert sorted(set(expected) - set(rows)) == [], "flags missing from the README's Configuration table"
    assert sorted(set(rows) - set(expected)) == [], "README lists flags `diffamp serve` does not have"
    wrong = {flag: (rows[flag], env) for flag, env in expected.items() if rows[flag] != env}
    assert wrong == {}, "README env column (readme, code)"


def test_every_client_command_is_documented():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    missing = [name for name in commands if not re.search(rf"diffamp {name}\b", README)]
    assert missing == []


def test_the_files_the_readme_names_exist():
    named = set(re.findall(r"`((?:services|client|bench|tests|k8s|protos)/[A-Za-z0-9_./-]+)`", README))
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists())
    assert missing == []
