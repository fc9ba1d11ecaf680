"""The comparison page runs on its own.

A reader may open ``04_comparison`` first, or alone on Binder, before any pattern notebook has
written its posterior to ``notebooks/artifacts/``. The page then samples the missing posteriors
itself. This test executes it, in a fresh kernel, in a copy of ``notebooks/`` without the
``artifacts`` folder, and checks that it finished, sampled all four posteriors itself, drew its
figure and its summary table, and left no files behind. (The normal run, after 01-03 have
written their files, is covered by the notebook tests and the book build.)

BLAS runs single-threaded (the repository's conftest.py sets OPENBLAS_NUM_THREADS=1, and the
kernel inherits the environment). Takes a few minutes: four NUTS runs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
PAGE = "04_comparison.ipynb"


def cell_labelled(nb: nbformat.NotebookNode, label: str) -> nbformat.NotebookNode:
    found = [c for c in nb.cells if c.cell_type == "code" and f"#| label: {label}" in c.source]
    assert len(found) == 1, f"{PAGE}: {len(found)} cells labelled {label!r}"
    return found[0]


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> tuple[nbformat.NotebookNode, Path]:
    folder = tmp_path_factory.mktemp("notebooks")
    shutil.copytree(NOTEBOOKS, folder, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("artifacts", ".ipynb_checkpoints"))
    assert not (folder / "artifacts").exists()
    nb = nbformat.read(folder / PAGE, as_version=4)
    ci = os.environ.get("CI")
    os.environ["CI"] = "true"  # no progress bars in the kernel's output
    try:
        NotebookClient(nb, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        if ci is None:
            del os.environ["CI"]
        else:
            os.environ["CI"] = ci
    return nb, folder


def test_runs_alone_and_samples_every_posterior(executed) -> None:
    nb, _ = executed
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert errors == []
    found = [c for c in nb.cells if c.cell_type == "code" and "origin[label] =" in c.source]
    assert len(found) == 1, f"{PAGE}: no single cell records where each posterior came from"
    origin = found[0]
    text = "".join(o.get("data", {}).get("text/plain", "") for o in origin.outputs)
    for label, seed in [("1 tree_at", 0), ("2 PyroxModule", 1), ("3 Parameterized", 2), ("bridge", 3)]:
        assert f"'{label}': 'sampled here, seed {seed}'" in text, text


def test_draws_the_figure_and_the_table(executed) -> None:
    nb, _ = executed
    figure = cell_labelled(nb, "fig-posteriors")
    assert any("image/png" in o.get("data", {}) for o in figure.outputs), "no figure drawn"
    table = cell_labelled(nb, "tbl-posterior-summary")
    html = "".join(o.get("data", {}).get("text/html", "") for o in table.outputs)
    assert "<table" in html, "no table"
    for run in ("1 tree_at", "2 PyroxModule", "3 Parameterized", "bridge"):
        assert run in html, f"the table has no row for {run}"


def test_leaves_no_files_behind(executed) -> None:
    _, folder = executed
    assert not (folder / "artifacts").exists()
