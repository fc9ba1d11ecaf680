"""Each pattern's model cell runs alone and is the notebook's model.

Every pattern notebook (01-03) shows its whole model in the code cells tagged ``model``
(a single cell, or a contiguous run of cells): imports, float64, the module(s) and the model
function, so that a reader can copy it into their own code. This module extracts those
cells, runs them in a fresh Python process, in an empty folder, with nothing added but the
book's data lines, and evaluates ``numpyro.infer.util.log_density`` of ``model`` at the
notebook's 24 check points. The values must equal the ones the notebook itself recorded in
its posterior artifact (``notebooks/artifacts/pattern{1,2,3}.nc``, written when the notebooks
run, before this file) and SciPy's independent evaluation of the model
(``reference.log_joint``).

The check points come from the artifact, the site names from the model itself: the three
latent sample sites, whatever their scope, must end in ``lengthscale``, ``amplitude`` and
``noise``. BLAS runs single-threaded in the subprocess, as in the notebooks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import reference as ref

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
PATTERNS = {
    "pattern1": "01_tree_at.ipynb",
    "pattern2": "02_pyrox_module.ipynb",
    "pattern3": "03_parameterized.ipynb",
}
TAG = "model"
PLUMBING = ("to_netcdf", "check_log_joint")
"""Code that exists for the tests; a cell holding it must be removed from the page."""

DATA_LINES = """
import numpy as np

rng = np.random.default_rng(0)
x = np.sort(rng.uniform(-10.0, 10.0, 100))
y = np.sinc(x / np.pi) + 0.1 * rng.normal(size=100)
"""
"""The book's data, exactly as every notebook builds it (``reference.data``)."""

HARNESS = """
import json as _json
import sys as _sys

from numpyro.handlers import seed as _seed, trace as _trace
from numpyro.infer.util import log_density as _log_density

_points = _json.loads(_sys.stdin.read())
_sites = _trace(_seed(model, rng_seed=0)).get_trace(x, y)
_latent = [
    name for name, site in _sites.items()
    if site["type"] == "sample" and not site["is_observed"]
]
_by_short_name = {name.rsplit(".", 1)[-1]: name for name in _latent}
_values = []
for _point in _points:
    _params = {_by_short_name[short]: value for short, value in _point.items()}
    _values.append(float(_log_density(model, (x, y), {}, _params)[0]))
print("RESULT " + _json.dumps({"latent": _latent, "log_joint": _values}))
"""
"""Appended after the data: evaluates the model's log joint at the points read from stdin."""


def read(notebook: str) -> list[dict]:
    """The notebook's cells, each with its ``source`` joined into one string."""
    cells = json.loads((NOTEBOOKS / notebook).read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if isinstance(cell["source"], list):
            cell["source"] = "".join(cell["source"])
    return cells


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def model_cells(cells: list[dict]) -> list[tuple[int, str]]:
    """``(index, source)`` of each code cell tagged ``model``, in order."""
    return [
        (i, cell["source"])
        for i, cell in enumerate(cells)
        if cell["cell_type"] == "code" and TAG in tags(cell)
    ]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_model_is_one_contiguous_tagged_run(pattern):
    cells = model_cells(read(PATTERNS[pattern]))
    assert cells, f"{PATTERNS[pattern]}: no code cell tagged {TAG!r}"
    indices = [i for i, _ in cells]
    assert indices == list(range(indices[0], indices[0] + len(indices))), (
        f"{PATTERNS[pattern]}: the cells tagged {TAG!r} ({indices}) are not one contiguous run"
    )
    source = "\n".join(s for _, s in cells)
    assert 'jax.config.update("jax_enable_x64", True)' in source, (
        f"{PATTERNS[pattern]}: the model cells do not switch float64 on themselves"
    )
    assert "def model(" in source, f"{PATTERNS[pattern]}: the model cells define no `model`"


@pytest.mark.parametrize("pattern", PATTERNS)
def test_test_plumbing_is_removed_from_the_page(pattern):
    shown = [
        i
        for i, cell in enumerate(read(PATTERNS[pattern]))
        if cell["cell_type"] == "code"
        and any(word in cell["source"] for word in PLUMBING)
        and "remove-cell" not in tags(cell)
    ]
    assert shown == [], f"{PATTERNS[pattern]}: cells {shown} write test data but are shown"


def run_alone(source: str, points: list[dict[str, float]], cwd: Path) -> dict:
    """Run ``source`` in a fresh interpreter in ``cwd``, feeding ``points`` on stdin."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", JAX_PLATFORMS="cpu")
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-c", source],
        input=json.dumps(points),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"the model cells failed when run alone:\n{done.stderr[-4000:]}"
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 1, f"no result from the model cells:\n{done.stdout[-2000:]}"
    return json.loads(results[0].removeprefix("RESULT "))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_model_cells_alone_give_the_notebooks_log_joint(artifacts, pattern, tmp_path):
    constant = artifacts[pattern].constant_data
    check = np.column_stack([constant[f"check_{name}"].values for name in ref.NAMES])
    np.testing.assert_array_equal(check, ref.check_points(), err_msg=f"{pattern}: check points")
    recorded = constant["check_log_joint"].values

    cells = "\n\n".join(s for _, s in model_cells(read(PATTERNS[pattern])))
    points = [dict(zip(ref.NAMES, map(float, theta))) for theta in check]
    result = run_alone(f"{cells}\n\n{DATA_LINES}\n{HARNESS}", points, tmp_path)

    short = sorted(name.rsplit(".", 1)[-1] for name in result["latent"])
    assert short == sorted(ref.NAMES), f"{pattern}: latent sites {result['latent']}"
    got = np.array(result["log_joint"])
    np.testing.assert_allclose(got, recorded, rtol=1e-12, atol=0.0, err_msg=f"{pattern}: notebook")
    x, y = ref.data()
    expected = [ref.log_joint(theta, x, y) for theta in check]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, err_msg=f"{pattern}: SciPy")
