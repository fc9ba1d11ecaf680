"""binder/ holds the reader's environment: what the notebooks import, as pyproject.toml says it.

Binder's launch button builds ``binder/environment.yml`` and runs ``binder/postBuild``, which
installs ``pyrox_lite`` from the repository without its dependencies. So:

* every pip entry of the Binder environment is a requirement of ``pyproject.toml``'s
  ``[project] dependencies`` or its ``book`` extra, with the same version specifier, and
  none of the book's build tools (jupyter-book and its server, PyYAML) or Node.js is there;
* every ``[project]`` dependency is there, since postBuild installs the package with
  ``--no-deps``;
* every top-level package that a code cell of a notebook imports (read with ``ast``; the
  standard library, ``pyrox_lite`` and modules beside the notebooks aside) is declared both
  in the Binder environment and in ``pyproject.toml`` (dependencies or ``book`` extra).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# Requirements of the book extra that build the book rather than run a notebook.
BOOK_BUILD_TOOLS = {"jupyter-book", "jupyter-server", "pyyaml"}
# Import names that differ from the name of the distribution that provides them; any other
# name is looked up in the installed distributions, then taken as its own distribution name.
DISTRIBUTION_OF = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "PIL": "pillow",
    "skimage": "scikit-image",
    "cv2": "opencv-python",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def key(req: Requirement) -> tuple:
    return (
        canonicalize_name(req.name),
        req.specifier,
        frozenset(req.extras),
        str(req.marker or ""),
    )


def runtime_requirements() -> list[Requirement]:
    return [Requirement(r) for r in pyproject().get("dependencies", [])]


def reader_requirements() -> list[Requirement]:
    """pyproject.toml's runtime and book needs: what running the notebooks may ask for."""
    book = [Requirement(r) for r in pyproject().get("optional-dependencies", {}).get("book", [])]
    own = canonicalize_name(pyproject()["name"])
    return runtime_requirements() + [r for r in book if canonicalize_name(r.name) != own]


def binder_environment() -> dict:
    return yaml.safe_load((BINDER / "environment.yml").read_text(encoding="utf-8"))


def binder_pip_entries() -> list[str]:
    lists = [
        d["pip"] for d in binder_environment()["dependencies"] if isinstance(d, dict) and "pip" in d
    ]
    assert len(lists) == 1, "binder/environment.yml needs exactly one `pip:` list"
    return lists[0]


def binder_requirements() -> list[Requirement]:
    return [Requirement(e) for e in binder_pip_entries()]


def code_cells(path: Path) -> list[str]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in notebook["cells"]
        if c["cell_type"] == "code"
    ]


def imported_modules(source: str) -> set[str]:
    """Top-level names of the absolute imports of one cell (IPython magics and shell lines dropped)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    names = set()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def third_party(names: set[str]) -> set[str]:
    own = pyproject()["name"].replace("-", "_")
    local = {p.stem for p in (ROOT / "notebooks").glob("*.py")} | {
        p.name for p in (ROOT / "notebooks").iterdir() if (p / "__init__.py").is_file()
    }
    return {n for n in names if n not in sys.stdlib_module_names and n != own and n not in local}


@functools.cache
def installed_distributions() -> dict[str, list[str]]:
    """Import name -> installed distributions providing it (a scan of site-packages: slow)."""
    return importlib.metadata.packages_distributions()


def distribution(import_name: str) -> str:
    if import_name in DISTRIBUTION_OF:
        return canonicalize_name(DISTRIBUTION_OF[import_name])
    installed = installed_distributions().get(import_name, [])
    if len(installed) == 1:
        return canonicalize_name(installed[0])
    return canonicalize_name(import_name)


@functools.cache
def notebook_imports() -> dict[str, set[str]]:
    """Distribution name -> the notebooks that import it."""
    found: dict[str, set[str]] = {}
    for path in NOTEBOOKS:
        for cell in code_cells(path):
            for name in third_party(imported_modules(cell)):
                found.setdefault(distribution(name), set()).add(path.name)
    return found


def test_python_and_pip_only_at_the_conda_level() -> None:
    conda = [d for d in binder_environment()["dependencies"] if isinstance(d, str)]
    assert sorted(conda) == ["pip", "python=3.11"], conda


def test_pip_entries_are_requirements() -> None:
    """No local installs in the environment file: postBuild installs pyrox_lite."""
    local = [e for e in binder_pip_entries() if e.startswith(("-", ".", "/"))]
    assert local == [], f"install the repository in binder/postBuild, not with {local}"


@pytest.mark.parametrize("req", binder_requirements(), ids=str)
def test_binder_requirement_is_a_reader_requirement(req: Requirement) -> None:
    allowed = {key(r) for r in reader_requirements()}
    assert key(req) in allowed, (
        f"binder/environment.yml installs {req}; pyproject.toml's dependencies and book extra have "
        f"{[str(r) for r in reader_requirements() if canonicalize_name(r.name) == canonicalize_name(req.name)]}"
    )


def test_no_book_tools_or_node() -> None:
    names = {canonicalize_name(r.name) for r in binder_requirements()}
    conda = {
        re.split(r"[<>=!~ ]", d, maxsplit=1)[0]
        for d in binder_environment()["dependencies"]
        if isinstance(d, str)
    }
    assert names & BOOK_BUILD_TOOLS == set()
    assert "nodejs" not in conda


def test_every_runtime_dependency_is_there() -> None:
    """postBuild installs pyrox_lite with --no-deps, so its dependencies come from here."""
    have = {key(r) for r in binder_requirements()}
    assert [str(r) for r in runtime_requirements() if key(r) not in have] == []


def test_post_build_installs_the_package() -> None:
    script = BINDER / "postBuild"
    text = script.read_text(encoding="utf-8")
    assert text.startswith("#!/bin/bash\n") and os.access(script, os.X_OK), (
        "postBuild: a bash script, executable"
    )
    assert re.search(r"^set -e", text, re.MULTILINE), (
        "postBuild must stop at the first error (set -e)"
    )
    commands = [
        line for line in text.splitlines() if line.strip() and not line.startswith(("#", "set "))
    ]
    assert commands == ["python -m pip install --no-deps --editable ."], commands


def test_notebooks_import_what_is_parsed() -> None:
    """The import reader is not vacuous: it sees the book's own imports."""
    found = notebook_imports()
    assert {"numpyro", "jax", "matplotlib"} <= set(found), sorted(found)


@pytest.mark.parametrize("dist", sorted(notebook_imports()))
def test_notebook_import_is_declared(dist: str) -> None:
    where = ", ".join(sorted(notebook_imports()[dist]))
    assert dist in {canonicalize_name(r.name) for r in reader_requirements()}, (
        f"{where} import {dist}: declare it in pyproject.toml (book extra) and environment.yml"
    )
    assert dist in {canonicalize_name(r.name) for r in binder_requirements()}, (
        f"{where} import {dist}: add it to binder/environment.yml, with pyproject.toml's specifier"
    )


# ---------------------------------------------------------------------------
# Optional dependencies, which imports do not show, and the check that runs the notebooks.

# What a notebook uses -> the optional dependency of an imported package that it needs.
OPTIONAL = {"pandas' DataFrame.style (a Styler)": "jinja2"}


def uses_styler(source: str) -> bool:
    """Whether a cell reads ``.style`` of something other than matplotlib (``plt.style``)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return any(
        isinstance(node, ast.Attribute)
        and node.attr == "style"
        and not (isinstance(node.value, ast.Name) and node.value.id in {"plt", "mpl", "matplotlib"})
        for node in ast.walk(ast.parse("\n".join(lines)))
    )


def test_optional_dependencies_of_what_the_notebooks_use_are_declared() -> None:
    users = [p.name for p in NOTEBOOKS if any(uses_styler(c) for c in code_cells(p))]
    assert users, "no notebook uses DataFrame.style: drop jinja2 from OPTIONAL and the environments"
    need = OPTIONAL["pandas' DataFrame.style (a Styler)"]
    for where, reqs in (
        ("pyproject.toml", reader_requirements()),
        ("binder/environment.yml", binder_requirements()),
    ):
        assert need in {canonicalize_name(r.name) for r in reqs}, (
            f"{', '.join(users)} use DataFrame.style, which needs {need}: declare it in {where}"
        )


def reader_runner():
    spec = importlib.util.spec_from_file_location("run_notebooks", BINDER / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_weekly_workflow_runs_every_notebook_in_the_reader_environment() -> None:
    """`make reader-env-check` installs binder/environment.yml's pip packages (read without
    PyYAML, which the reader's environment lacks), runs binder/postBuild and executes the
    table of contents' notebooks; a scheduled workflow runs it."""
    runner = reader_runner()
    assert runner.pip_requirements() == binder_pip_entries()
    assert {p.name for p in runner.toc_notebooks()} == {p.name for p in NOTEBOOKS}
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "\nreader-env-check:\n" in makefile, "the Makefile has no target reader-env-check"
    recipe = makefile.split("\nreader-env-check:\n", 1)[1].split("\n\n", 1)[0]
    for step in ("binder/run_notebooks.py --requirements", "binder/postBuild", "nbclient"):
        assert step in recipe, f"make reader-env-check does not run {step}"
    scheduled = []
    for path in (ROOT / ".github" / "workflows").glob("*.yml"):
        workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
        triggers = workflow.get("on", workflow.get(True, {}))  # YAML 1.1 reads `on` as True
        runs = [s.get("run", "") for job in workflow["jobs"].values() for s in job["steps"]]
        if "schedule" in triggers and "make reader-env-check" in runs:
            scheduled.append(path.name)
    assert scheduled, "no scheduled workflow runs `make reader-env-check`"
