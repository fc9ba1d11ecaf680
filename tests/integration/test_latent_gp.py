"""The latent-GP chapter's artifact, checked against an independent evaluation of its model.

``notebooks/08_latent_gp.ipynb`` samples a whitened latent GP with a Poisson likelihood on
the yearly counts of coal-mining explosions and writes its posterior to
``notebooks/artifacts/latent_gp.nc``. This module writes the data and the model again, from
the page's math, with SciPy's densities and Cholesky factor, and checks

* that the artifact honours its contract: the hyperparameters under their site names, the
  whitened values and f at the training years, the data, ``diverging``, and the page's
  diagnostics (R-hat <= 1.01, bulk and tail ESS >= 400 for every hyperparameter, no
  divergence);
* that the log joint densities the page stored at its check points are those of this
  independent evaluation (1e-10 relative): the page and this file define one model;
* that each stored draw of f is mu + L(theta) u of the same draw.

BLAS runs single-threaded (the repository's conftest.py sets OPENBLAS_NUM_THREADS=1).
"""

from __future__ import annotations

import math
from pathlib import Path

import arviz as az
import numpy as np
import pytest
import scipy.linalg
from scipy.stats import lognorm, norm, poisson

ARTIFACT = Path(__file__).resolve().parents[2] / "notebooks" / "artifacts" / "latent_gp.nc"
JITTER = 1e-6
RTOL = 1e-10

# Explosions in British coal mines per calendar year, 1851-1961 (Jarrett 1979).
COUNTS = np.array(
    [
        4,
        5,
        4,
        1,
        0,
        4,
        3,
        4,
        0,
        6,
        3,
        3,
        4,
        0,
        2,
        6,
        3,
        3,
        5,
        4,
        5,
        3,
        1,
        4,
        4,
        1,
        5,
        5,
        3,
        4,
        2,
        5,
        2,
        2,
        3,
        4,
        2,
        1,
        3,
        2,
        2,
        1,
        1,
        1,
        1,
        3,
        0,
        0,
        1,
        0,
        1,
        1,
        0,
        0,
        3,
        1,
        0,
        3,
        2,
        2,
        0,
        1,
        1,
        1,
        0,
        1,
        0,
        1,
        0,
        0,
        0,
        2,
        1,
        0,
        0,
        0,
        1,
        1,
        0,
        2,
        3,
        3,
        1,
        1,
        2,
        1,
        1,
        1,
        1,
        2,
        3,
        3,
        0,
        0,
        0,
        1,
        4,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        1,
        0,
        0,
        1,
        0,
    ],
    dtype=float,
)
YEARS = np.arange(1851, 1962, dtype=float)
HELD_OUT = (YEARS - 1853) % 4 == 0
X, Y = YEARS[~HELD_OUT], COUNTS[~HELD_OUT]
THETA = ["kernel.lengthscale", "kernel.amplitude", "gp.mean"]


def cholesky(x, ell, amp):
    gram = amp**2 * np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / ell**2)
    return scipy.linalg.cholesky(gram + JITTER * np.eye(len(x)), lower=True)


def log_joint(ell, amp, mu, u) -> float:
    """The page's log joint density over (lengthscale, amplitude, mean, u), by SciPy."""
    f = mu + cholesky(X, ell, amp) @ u
    return float(
        lognorm.logpdf(ell, s=0.5, scale=20.0)
        + lognorm.logpdf(amp, s=0.5, scale=1.0)
        + norm.logpdf(mu)
        + norm.logpdf(u).sum()
        + poisson.logpmf(Y, np.exp(f)).sum()
    )


@pytest.fixture(scope="module")
def idata():
    if not ARTIFACT.is_file():
        pytest.fail(
            f"{ARTIFACT} not found: run notebooks/08_latent_gp.ipynb first "
            f"(`pytest` runs the notebooks before this file)."
        )
    with az.rc_context({"data.load": "eager"}):
        return az.from_netcdf(ARTIFACT)


def test_the_data_are_the_tallied_dates():
    assert len(COUNTS) == 111 and COUNTS.sum() == 190  # 191 dates, one of them in 1962
    assert len(X) == 83 and HELD_OUT.sum() == 28


def test_the_artifact_honours_its_contract(idata):
    assert sorted(idata.posterior.data_vars) == sorted(THETA + ["gp.u", "gp.f"])
    assert idata.posterior["gp.u"].shape[-1] == len(X) == idata.posterior["gp.f"].shape[-1]
    np.testing.assert_array_equal(idata.constant_data["x"].values, X)
    np.testing.assert_array_equal(idata.observed_data["y"].values, Y)
    np.testing.assert_array_equal(idata.constant_data["x_test"].values, YEARS[HELD_OUT])
    np.testing.assert_array_equal(idata.constant_data["y_test"].values, COUNTS[HELD_OUT])
    assert int(idata.sample_stats["diverging"].sum()) == 0
    summary = az.summary(idata, var_names=THETA, round_to="none")
    assert (summary["r_hat"] <= 1.01).all(), summary
    assert (summary[["ess_bulk", "ess_tail"]] >= 400).all().all(), summary


def test_the_stored_log_joints_are_this_model(idata):
    stored = idata.constant_data["check_log_joint"].values
    assert len(stored) >= 3
    for i, value in enumerate(stored):
        ell, amp, mu = (float(idata.constant_data[f"check_{n}"].values[i]) for n in THETA)
        u = idata.constant_data["check_gp.u"].values[i]
        want = log_joint(ell, amp, mu, u)
        assert abs(value - want) <= RTOL * abs(want), (i, value, want)


def test_the_log_joint_comparison_rejects_another_prior(idata):
    """The comparison above can fail: a lengthscale prior with median 25 instead of 20 is a
    different model, and its log joint differs from the stored one."""
    ell, amp, mu = (float(idata.constant_data[f"check_{n}"].values[0]) for n in THETA)
    u = idata.constant_data["check_gp.u"].values[0]
    other = (
        log_joint(ell, amp, mu, u)
        + lognorm.logpdf(ell, s=0.5, scale=25.0)
        - lognorm.logpdf(ell, s=0.5, scale=20.0)
    )
    stored = float(idata.constant_data["check_log_joint"].values[0])
    assert abs(other - stored) > 1e-6 * abs(stored)


def test_each_draw_of_f_is_the_unwhitened_u(idata):
    post = idata.posterior
    rng = np.random.default_rng(0)
    for _ in range(5):
        c, d = rng.integers(post.sizes["chain"]), rng.integers(post.sizes["draw"])
        ell, amp, mu = (float(post[n].values[c, d]) for n in THETA)
        f = mu + cholesky(X, ell, amp) @ post["gp.u"].values[c, d]
        np.testing.assert_allclose(
            post["gp.f"].values[c, d], f, rtol=1e-9, atol=1e-9 * math.sqrt(len(X))
        )
