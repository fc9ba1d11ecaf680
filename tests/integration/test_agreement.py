"""The three patterns sample one posterior.

The pattern notebooks (run by pytest before this file) each save their NUTS
posterior and their model's log joint density at 24 fixed points to
``notebooks/artifacts/pattern{1,2,3}.nc``. This module checks that

* each file honours the artifact contract and comes from a healthy NUTS run;
* the three log joint densities are equal at the check points, and equal to an
  independent SciPy evaluation of the model (``reference.log_joint``);
* the three posteriors agree with each other and with a deterministic quadrature
  of the posterior, within tolerances derived from their Monte Carlo standard
  errors (``reference.disagreements``);
* that same checker rejects a posterior sampled from a deliberately wrong model.

BLAS runs single-threaded (the repository's conftest.py sets OPENBLAS_NUM_THREADS=1).
"""

from __future__ import annotations

import itertools

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import reference as ref
from numpyro.infer import MCMC, NUTS

from pyrox_lite import GPMarginal

jax.config.update("jax_enable_x64", True)

PATTERNS = ("pattern1", "pattern2", "pattern3")
CHECK_NAMES = tuple(f"check_{name}" for name in ref.NAMES)


@pytest.fixture(scope="module")
def summaries(artifacts) -> dict[str, dict[str, ref.Summary]]:
    return {p: ref.summarize(idata) for p, idata in artifacts.items()}


@pytest.fixture(scope="session")
def box() -> ref.Box:
    return ref.find_box(*ref.data())


@pytest.fixture(scope="session")
def quadrature(box) -> ref.Quadrature:
    return ref.quadrature(*ref.data(), box, n=48)


@pytest.fixture(scope="session")
def reference_summary(quadrature) -> dict[str, ref.Summary]:
    return ref.summarize_quadrature(quadrature)


# -- the artifacts ---------------------------------------------------------------------


@pytest.mark.parametrize("pattern", PATTERNS)
def test_artifact_follows_the_contract(artifacts, pattern):
    idata = artifacts[pattern]
    for group in ("posterior", "sample_stats", "observed_data", "constant_data"):
        assert group in idata.groups(), f"{pattern}: no `{group}` group"
    posterior, constant = idata.posterior, idata.constant_data
    assert set(posterior.data_vars) == set(ref.NAMES), (
        f"{pattern}: posterior variables {sorted(posterior.data_vars)}, expected {sorted(ref.NAMES)}"
    )
    for name in ref.NAMES:
        assert posterior[name].dims == ("chain", "draw"), (
            f"{pattern}: {name} has dims {posterior[name].dims}"
        )
    diverging = idata.sample_stats.get("diverging")
    assert diverging is not None, f"{pattern}: sample_stats has no `diverging`"
    assert diverging.dtype == bool and diverging.shape == posterior["noise"].shape, (
        f"{pattern}: {diverging}"
    )

    x, y = ref.data()
    np.testing.assert_array_equal(
        constant["x"].values, x, err_msg=f"{pattern}: x is not the book's data"
    )
    np.testing.assert_array_equal(
        idata.observed_data["y"].values, y, err_msg=f"{pattern}: y is not the book's data"
    )
    for name in CHECK_NAMES + ("check_log_joint",):
        assert constant[name].dims == ("check",), (
            f"{pattern}: {name} has dims {constant[name].dims}"
        )
    for i, name in enumerate(CHECK_NAMES):
        expected = ref.check_points()[:, i]
        np.testing.assert_allclose(
            constant[name].values, expected, rtol=1e-15, err_msg=f"{pattern}: {name}"
        )


def test_artifacts_share_data_and_check_points(artifacts):
    first = artifacts[PATTERNS[0]]
    for pattern in PATTERNS[1:]:
        idata = artifacts[pattern]
        for name in ("x",) + CHECK_NAMES:
            np.testing.assert_array_equal(
                idata.constant_data[name].values,
                first.constant_data[name].values,
                err_msg=f"{pattern}: {name}",
            )
        np.testing.assert_array_equal(
            idata.observed_data["y"].values, first.observed_data["y"].values
        )


@pytest.mark.parametrize("pattern", PATTERNS)
def test_sampler_is_healthy(artifacts, pattern):
    """The MCSE-based comparisons below trust the chains: they must have mixed
    (rank-normalised R-hat < 1.01 and bulk/tail ESS > 400, the thresholds of
    Vehtari et al. 2021) and must not have diverged in more than 1% of draws."""
    idata = artifacts[pattern]
    summary = az.summary(idata, var_names=list(ref.NAMES), kind="diagnostics", round_to="none")
    assert (summary["r_hat"] < 1.01).all(), f"{pattern}:\n{summary}"
    assert (summary[["ess_bulk", "ess_tail"]] > 400).all().all(), f"{pattern}:\n{summary}"
    divergent = float(idata.sample_stats["diverging"].mean())
    assert divergent <= 0.01, f"{pattern}: {divergent:.1%} of transitions diverged"


# -- the log joint density -------------------------------------------------------------


def _log_joints(idata: az.InferenceData) -> np.ndarray:
    return idata.constant_data["check_log_joint"].values


@pytest.mark.parametrize("a, b", list(itertools.combinations(PATTERNS, 2)))
def test_log_joints_are_equal(artifacts, a, b):
    np.testing.assert_allclose(
        _log_joints(artifacts[a]), _log_joints(artifacts[b]), rtol=1e-9, atol=1e-9
    )


@pytest.mark.parametrize("pattern", PATTERNS)
def test_log_joint_matches_scipy(artifacts, pattern):
    """Agreement between the patterns could hide a shared mistake; SciPy's densities pin the model."""
    x, y = ref.data()
    expected = [ref.log_joint(theta, x, y) for theta in ref.check_points()]
    np.testing.assert_allclose(_log_joints(artifacts[pattern]), expected, rtol=1e-9, atol=1e-9)


# -- the quadrature reference ----------------------------------------------------------


def test_quadrature_density_matches_scipy():
    """The grid's eigendecomposition shortcut evaluates the same density as ``reference.log_joint``
    (minus the log Jacobian ``sum(u)``)."""
    x, y = ref.data()
    for theta in ref.check_points():
        u = np.log(theta)
        expected = ref.log_joint(theta, x, y)
        assert ref.log_posterior_u(u, x, y) - u.sum() == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_quadrature_is_converged(box, quadrature, reference_summary):
    """The box holds the posterior (density on its faces below 1e-9 of the peak) and the
    grid is fine: 48 and 72 points per axis agree to within 1e-3 posterior sds on
    every mean and quantile. The smallest Monte Carlo tolerance, 5 MCSE with an ESS
    of at most ~1e4, is 0.05 sd, fifty times larger, so the reference can be
    treated as exact."""
    assert quadrature.edge_ratio() < ref.EDGE
    finer = ref.summarize_quadrature(ref.quadrature(*ref.data(), box, n=72))
    for name in ref.NAMES:
        sd = quadrature.sd(name)
        for stat, (value, _) in reference_summary[name].values().items():
            assert abs(value - finer[name].values()[stat][0]) < 1e-3 * sd, (name, stat)


# -- the posteriors --------------------------------------------------------------------


@pytest.mark.parametrize("a, b", list(itertools.combinations(PATTERNS, 2)))
def test_posteriors_agree(summaries, a, b):
    assert ref.disagreements(summaries[a], summaries[b]) == []


@pytest.mark.parametrize("pattern", PATTERNS)
def test_posterior_matches_quadrature(summaries, reference_summary, pattern):
    assert ref.disagreements(summaries[pattern], reference_summary) == []


EXPONENTS = (0.5, 1.0)
"""``k = amplitude**2 * exp(-exponent * |x - x'|**2 / lengthscale**2)``: 1/2 is the RBF kernel,
1 is the planted mistake, an RBF missing its factor 2."""


def _right_and_wrong_model(x, y):
    """The book's model and the planted wrong one, side by side along a plate of size 2.

    The two copies share no variable, so their joint posterior is the product of the
    two posteriors and one NUTS run (one compilation) samples both."""
    exponent = jnp.asarray(EXPONENTS)[:, None, None]
    with numpyro.plate("model", len(EXPONENTS)):
        lengthscale = numpyro.sample("lengthscale", dist.LogNormal(0.0, 1.0))
        amplitude = numpyro.sample("amplitude", dist.LogNormal(0.0, 1.0))
        noise = numpyro.sample("noise", dist.LogNormal(-2.0, 1.0))
        sqdist = (x[:, None] - x[None, :]) ** 2 / lengthscale[:, None, None] ** 2
        gram = amplitude[:, None, None] ** 2 * jnp.exp(-exponent * sqdist)
        numpyro.sample(
            "y", GPMarginal(gram, noise), obs=jnp.broadcast_to(y, (len(EXPONENTS), y.size))
        )


@pytest.fixture(scope="module")
def short_runs() -> dict[float, dict[str, ref.Summary]]:
    """Summaries of a short seeded NUTS run (one chain, 300 warmup and 500 draws) of each model."""
    mcmc = MCMC(NUTS(_right_and_wrong_model), num_warmup=300, num_samples=500, progress_bar=False)
    mcmc.run(jax.random.key(7), *ref.data())
    draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    return {
        e: ref.summarize(
            az.from_dict(posterior={k: v[..., i] for k, v in draws.items() if k in ref.NAMES})
        )
        for i, e in enumerate(EXPONENTS)
    }


@pytest.mark.parametrize(
    "exponent, wrong", [(0.5, False), (1.0, True)], ids=["right-model", "wrong-model"]
)
def test_checker_tells_right_from_wrong(short_runs, reference_summary, exponent, wrong):
    """The checker used above can fail: it rejects NUTS on an RBF missing its factor 2,
    while the same run on the right model passes."""
    found = ref.disagreements(short_runs[exponent], reference_summary)
    assert bool(found) == wrong, found
