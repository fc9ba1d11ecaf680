"""environment.yml installs what pyproject.toml declares, with the same version specifiers.

Every requirement of pyproject.toml (its dependencies and every extra, whatever extras it
has) must be a pip entry of environment.yml, and every pip entry must come from
pyproject.toml. The conda level holds only the interpreter and the tools around it.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CONDA_ONLY = {"python", "pip", "nodejs"}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))


def key(req: Requirement) -> tuple:
    """What two requirement strings must share to ask for the same thing."""
    return (
        canonicalize_name(req.name),
        req.specifier,
        frozenset(req.extras),
        str(req.marker or ""),
    )


def pyproject_requirements() -> list[Requirement]:
    project = pyproject()["project"]
    own = canonicalize_name(project["name"])
    groups = [project.get("dependencies", []), *project.get("optional-dependencies", {}).values()]
    reqs = [Requirement(r) for group in groups for r in group]
    return [
        r for r in reqs if canonicalize_name(r.name) != own
    ]  # an extra may name the project itself


def conda_entries() -> list[str]:
    return [d for d in environment()["dependencies"] if isinstance(d, str)]


def pip_entries() -> list[str]:
    lists = [d["pip"] for d in environment()["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(lists) == 1, "environment.yml needs exactly one `pip:` list"
    return lists[0]


def environment_requirements() -> list[Requirement]:
    return [Requirement(e) for e in pip_entries() if not e.startswith(("-e", "--editable"))]


def test_python_is_pinned_to_3_11() -> None:
    assert "python=3.11" in conda_entries()


def test_installs_this_package() -> None:
    editable = [e for e in pip_entries() if e.startswith(("-e", "--editable"))]
    assert [e.split()[-1] for e in editable] == ["."], (
        f"expected one `-e .` pip entry; got {editable}"
    )


def test_conda_level_holds_only_the_tools() -> None:
    names = {re.split(r"[<>=!~ ]", e, maxsplit=1)[0] for e in conda_entries()}
    assert names <= CONDA_ONLY, (
        f"install {sorted(names - CONDA_ONLY)} through pyproject.toml and the pip list"
    )
    assert "pip" in names


@pytest.mark.parametrize("req", pyproject_requirements(), ids=str)
def test_pyproject_requirement_is_in_environment(req: Requirement) -> None:
    assert key(req) in {key(r) for r in environment_requirements()}, (
        f"pyproject.toml requires {req}; environment.yml's pip list has "
        f"{[str(r) for r in environment_requirements() if canonicalize_name(r.name) == canonicalize_name(req.name)]}"
    )


@pytest.mark.parametrize("req", environment_requirements(), ids=str)
def test_environment_requirement_is_in_pyproject(req: Requirement) -> None:
    assert key(req) in {key(r) for r in pyproject_requirements()}, (
        f"environment.yml installs {req}, which pyproject.toml does not declare"
    )


def test_no_duplicates() -> None:
    counts = Counter(canonicalize_name(r.name) for r in environment_requirements())
    assert [n for n, c in counts.items() if c > 1] == []


@pytest.mark.parametrize("extra", sorted(pyproject()["project"].get("optional-dependencies", {})))
def test_every_extra_has_its_group(extra: str) -> None:
    """Each extra is a labelled group of the pip list, so a reader sees what it is for."""
    text = (ROOT / "environment.yml").read_text(encoding="utf-8")
    assert re.search(rf"^\s*# extra: {re.escape(extra)}\s*$", text, re.MULTILINE), (
        f"environment.yml has no `# extra: {extra}` group"
    )
