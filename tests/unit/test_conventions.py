"""The conventions a contributor's pre-commit hooks enforce hold for the committed tree.

``.pre-commit-config.yaml`` runs ruff (lint and format), nbstripout and actionlint, all local
hooks that run the tools of the project's environment. These tests run the same tools in
checking mode, so that ``make test`` fails where a commit without the hooks slipped through
(actionlint is run by ``test_workflows.py``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".pre-commit-config.yaml"


def tool(name: str) -> str:
    """The executable ``name`` of this environment (the ``test`` extra installs it)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)


def hooks() -> list[dict]:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    return [(repo["repo"], hook) for repo in config["repos"] for hook in repo["hooks"]]


def test_every_hook_is_local_and_its_tool_installed() -> None:
    found = hooks()
    assert {hook["id"] for _, hook in found} == {
        "ruff-check",
        "ruff-format",
        "nbstripout",
        "actionlint",
    }
    for repo, hook in found:
        assert repo == "local", f"hook {hook['id']} would be downloaded from {repo}"
        assert hook["language"] == "system", hook
        tool(hook["entry"].split()[0])


def test_ruff_finds_nothing_to_fix() -> None:
    result = run(tool("ruff"), "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_changes_nothing() -> None:
    result = run(tool("ruff"), "format", "--no-cache", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_notebooks_are_committed_without_outputs() -> None:
    notebooks = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("*.ipynb"))
    result = run(tool("nbstripout"), "--keep-id", "--verify", *notebooks)
    assert result.returncode == 0, result.stdout + result.stderr
