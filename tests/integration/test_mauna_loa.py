"""The Mauna Loa CO2 model in three patterns, checked against independent code.

The chapter ``notebooks/07_mauna_loa.ipynb`` writes one composite-kernel GP in the three
patterns. This module writes the same model again, with the same data and priors, and checks

* that the three patterns' log joint densities and their gradients are equal at points drawn
  from the priors (1e-10 relative), and equal to an independent evaluation with
  scikit-learn's kernels and log marginal likelihood plus SciPy's log-normal densities;
* that type-II maximum likelihood in ``pyrox_lite`` (learnable ``PyroxParam``s, SciPy's
  L-BFGS-B on NumPyro's ``log_density``) and scikit-learn's ``GaussianProcessRegressor`` reach
  the same optimum: log marginal likelihoods within 1e-3 nats, hyperparameters within 1e-3
  relative;
* that the chapter's posterior artifact honours its contract and carries the log joint of this
  very model at its check points (so the page and this file define one model).

BLAS runs single-threaded (the repository's conftest.py sets OPENBLAS_NUM_THREADS=1).
"""

from __future__ import annotations

import math
from pathlib import Path

import arviz as az
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.optimize
import statsmodels.api as sm
from numpyro.distributions import constraints
from numpyro.infer.util import log_density
from scipy.stats import lognorm
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process import kernels as sk

from pyrox_lite import JITTER, GPMarginal, PyroxModule, PyroxParam, gp, kernels, pyrox_method

jax.config.update("jax_enable_x64", True)

ARTIFACT = Path(__file__).resolve().parents[2] / "notebooks" / "artifacts" / "mauna_loa.nc"
RTOL = 1e-10


def load():
    weekly = sm.datasets.co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().dropna()
    t = (monthly.index.year + (monthly.index.month - 0.5) / 12).to_numpy()
    co2 = monthly.to_numpy()
    train = (t >= 1988) & (t < 1998)
    mean, sd = co2[train].mean(), co2[train].std()
    return t[train], (co2[train] - mean) / sd, sd


X, Y, SD = load()
PPM = 1.0 / SD
# site: (median, spread) of a log-normal prior
PRIORS = {
    "trend.lengthscale": (30.0, 0.5),
    "trend.amplitude": (20.0 * PPM, 1.0),
    "seasonal.lengthscale": (1.0, 0.5),
    "seasonal.amplitude": (2.0 * PPM, 0.5),
    "decay.lengthscale": (50.0, 0.5),
    "medium.lengthscale": (1.0, 0.5),
    "medium.alpha": (1.0, 0.5),
    "medium.amplitude": (0.5 * PPM, 0.5),
    "gp.noise": (0.2 * PPM, 0.5),
}
NAMES = list(PRIORS)


def prior(site):
    median, spread = PRIORS[site]
    return dist.LogNormal(math.log(median), spread)


# ---------------------------------------------------------------------------
# The three patterns.

KERNEL1 = (
    kernels.RBF(1.0, 1.0)
    + kernels.Periodic(1.0, 1.0, 1.0) * kernels.RBF(1.0, None)
    + kernels.RationalQuadratic(1.0, 1.0, 1.0)
)


def model1(x, y=None):
    theta = {name: numpyro.sample(name, prior(name)) for name in NAMES}
    k = eqx.tree_at(
        lambda k: (
            k.parts[0].lengthscale,
            k.parts[0].amplitude,
            k.parts[1].parts[0].lengthscale,
            k.parts[1].parts[0].amplitude,
            k.parts[1].parts[1].lengthscale,
            k.parts[2].lengthscale,
            k.parts[2].alpha,
            k.parts[2].amplitude,
        ),
        KERNEL1,
        tuple(theta[name] for name in NAMES[:-1]),
    )
    return numpyro.sample("y", GPMarginal(k(x, x), theta["gp.noise"]), obs=y)


class Part(PyroxModule):
    def draw(self, name):
        return self.pyrox_sample(name, prior(self.site_name(name)))


class Trend(Part):
    @pyrox_method
    def __call__(self, a, b):
        return kernels.rbf(a, b, self.draw("lengthscale"), self.draw("amplitude"))


class Seasonal(Part):
    @pyrox_method
    def __call__(self, a, b):
        return kernels.periodic(a, b, self.draw("lengthscale"), 1.0, self.draw("amplitude"))


class Decay(Part):
    @pyrox_method
    def __call__(self, a, b):
        return kernels.rbf(a, b, self.draw("lengthscale"), 1.0)


class Medium(Part):
    @pyrox_method
    def __call__(self, a, b):
        return kernels.rational_quadratic(
            a, b, self.draw("lengthscale"), self.draw("alpha"), self.draw("amplitude")
        )


PARTS2 = (
    Trend(pyrox_name="trend"),
    Seasonal(pyrox_name="seasonal"),
    Decay(pyrox_name="decay"),
    Medium(pyrox_name="medium"),
)


def model2(x, y=None):
    trend, seasonal, decay, medium = PARTS2
    gram = trend(x, x) + seasonal(x, x) * decay(x, x) + medium(x, x)
    noise = numpyro.sample("gp.noise", prior("gp.noise"))
    return numpyro.sample("y", GPMarginal(gram, noise), obs=y)


def co2_gp(param):
    kernel = (
        gp.RBF(
            lengthscale=param("trend.lengthscale"),
            amplitude=param("trend.amplitude"),
            pyrox_name="trend",
        )
        + gp.Periodic(
            lengthscale=param("seasonal.lengthscale"),
            period=PyroxParam(1.0),
            amplitude=param("seasonal.amplitude"),
            pyrox_name="seasonal",
        )
        * gp.RBF(lengthscale=param("decay.lengthscale"), amplitude=None, pyrox_name="decay")
        + gp.RationalQuadratic(
            lengthscale=param("medium.lengthscale"),
            alpha=param("medium.alpha"),
            amplitude=param("medium.amplitude"),
            pyrox_name="medium",
        )
    )
    return gp.ExactGP(kernel, noise=param("gp.noise"), pyrox_name="gp")


GP3 = co2_gp(lambda site: PyroxParam(PRIORS[site][0], prior=prior(site)))


def model3(x, y=None):
    return GP3(x, y)


MODELS = {"pattern1": model1, "pattern2": model2, "pattern3": model3}


# ---------------------------------------------------------------------------
# Independent references: scikit-learn's kernels and likelihood, SciPy's densities.


def sk_kernel(th):
    return (
        sk.ConstantKernel(th["trend.amplitude"] ** 2) * sk.RBF(th["trend.lengthscale"])
        + sk.ConstantKernel(th["seasonal.amplitude"] ** 2)
        * sk.ExpSineSquared(th["seasonal.lengthscale"], 1.0, periodicity_bounds="fixed")
        * sk.RBF(th["decay.lengthscale"])
        + sk.ConstantKernel(th["medium.amplitude"] ** 2)
        * sk.RationalQuadratic(th["medium.lengthscale"], th["medium.alpha"])
        + sk.WhiteKernel(th["gp.noise"] ** 2)
    )


def reference_log_joint(th) -> float:
    gpr = GaussianProcessRegressor(sk_kernel(th), alpha=JITTER, optimizer=None).fit(X[:, None], Y)
    log_prior = sum(lognorm.logpdf(th[n], s=PRIORS[n][1], scale=PRIORS[n][0]) for n in NAMES)
    return gpr.log_marginal_likelihood_value_ + log_prior


def check_points(n=4, seed=11):
    rng = np.random.default_rng(seed)
    return [
        {n_: float(PRIORS[n_][0] * np.exp(PRIORS[n_][1] * rng.normal())) for n_ in NAMES}
        for _ in range(n)
    ]


def value_and_grad(model, th):
    def f(vec):
        return log_density(model, (X, Y), {}, dict(zip(NAMES, vec)))[0]

    value, grad = jax.jit(jax.value_and_grad(f))(jnp.array([th[n] for n in NAMES]))
    return float(value), np.asarray(grad)


def rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ---------------------------------------------------------------------------
# Tests.


def test_the_three_patterns_register_the_same_sites():
    from numpyro import handlers

    for name, model in MODELS.items():
        trace = handlers.trace(handlers.seed(model, 0)).get_trace(X, Y)
        latent = [s for s, v in trace.items() if v["type"] == "sample" and not v["is_observed"]]
        assert sorted(latent) == sorted(NAMES), name


def test_log_joints_and_gradients_agree_and_match_scikit_learn():
    for th in check_points():
        results = {name: value_and_grad(model, th) for name, model in MODELS.items()}
        want = reference_log_joint(th)
        for name, (value, grad) in results.items():
            assert rel(value, results["pattern3"][0]) <= RTOL, name
            assert rel(grad, results["pattern3"][1]) <= RTOL, name
            assert rel(value, want) <= RTOL, (name, value, want)


def test_the_log_joint_comparison_rejects_a_swapped_splice():
    """A pattern 1 model with two leaves of the splice swapped is a different model, and the
    comparison used above says so."""

    def swapped(x, y=None):
        theta = {name: numpyro.sample(name, prior(name)) for name in NAMES}
        k = eqx.tree_at(
            lambda k: (
                k.parts[0].amplitude,
                k.parts[0].lengthscale,
                k.parts[1].parts[0].lengthscale,
                k.parts[1].parts[0].amplitude,
                k.parts[1].parts[1].lengthscale,
                k.parts[2].lengthscale,
                k.parts[2].alpha,
                k.parts[2].amplitude,
            ),
            KERNEL1,
            tuple(theta[name] for name in NAMES[:-1]),
        )
        return numpyro.sample("y", GPMarginal(k(x, x), theta["gp.noise"]), obs=y)

    th = check_points(1)[0]
    assert rel(value_and_grad(swapped, th)[0], reference_log_joint(th)) > 1e-3


def test_type_ii_maximum_likelihood_matches_scikit_learn():
    gp_ml = co2_gp(lambda site: PyroxParam(PRIORS[site][0], constraint=constraints.positive))
    tight = {"maxiter": 5000, "gtol": 1e-8, "ftol": 1e-13}

    @jax.jit
    def loss(z):
        return jax.value_and_grad(
            lambda z: -log_density(gp_ml, (X, Y), {}, dict(zip(NAMES, jnp.exp(z))))[0]
        )(z)

    start = np.log([PRIORS[n][0] for n in NAMES])
    res = scipy.optimize.minimize(
        lambda z: tuple(np.asarray(v) for v in loss(z)),
        start,
        jac=True,
        method="L-BFGS-B",
        options=tight,
    )
    ours, lml_ours = dict(zip(NAMES, np.exp(res.x))), -float(res.fun)

    def lbfgs(objective, theta0, bounds):
        r = scipy.optimize.minimize(
            objective, theta0, jac=True, bounds=bounds, method="L-BFGS-B", options=tight
        )
        return r.x, r.fun

    gpr = GaussianProcessRegressor(
        sk_kernel({n: PRIORS[n][0] for n in NAMES}), alpha=JITTER, optimizer=lbfgs
    ).fit(X[:, None], Y)
    k = gpr.kernel_
    trend, seasonal, medium, white = k.k1.k1.k1, k.k1.k1.k2, k.k1.k2, k.k2
    theirs = {
        "trend.lengthscale": trend.k2.length_scale,
        "trend.amplitude": math.sqrt(trend.k1.constant_value),
        "seasonal.lengthscale": seasonal.k1.k2.length_scale,
        "seasonal.amplitude": math.sqrt(seasonal.k1.k1.constant_value),
        "decay.lengthscale": seasonal.k2.length_scale,
        "medium.lengthscale": medium.k2.length_scale,
        "medium.alpha": medium.k2.alpha,
        "medium.amplitude": math.sqrt(medium.k1.constant_value),
        "gp.noise": math.sqrt(white.noise_level),
    }
    assert abs(lml_ours - gpr.log_marginal_likelihood_value_) <= 1e-3
    for n in NAMES:
        assert abs(ours[n] / theirs[n] - 1) <= 1e-3, (n, ours[n], theirs[n])
    # Each objective at the other's optimum: the two objectives are one function.
    np.testing.assert_allclose(
        gpr.log_marginal_likelihood(sk_kernel(ours).theta), lml_ours, rtol=1e-9
    )


def test_the_chapter_artifact():
    if not ARTIFACT.is_file():
        pytest.fail(
            f"{ARTIFACT} not found: run notebooks/07_mauna_loa.ipynb first "
            f"(`pytest` runs the notebooks before this file)."
        )
    with az.rc_context({"data.load": "eager"}):
        idata = az.from_netcdf(ARTIFACT)
    assert sorted(idata.posterior.data_vars) == sorted(NAMES)
    assert int(idata.sample_stats["diverging"].sum()) == 0
    summary = az.summary(idata, var_names=NAMES, round_to="none")
    assert (summary["r_hat"] <= 1.01).all() and (
        summary[["ess_bulk", "ess_tail"]] >= 400
    ).all().all()
    np.testing.assert_allclose(idata.constant_data["x"].values, X, rtol=0, atol=1e-12)
    np.testing.assert_allclose(idata.observed_data["y"].values, Y, rtol=1e-12)
    stored = idata.constant_data["check_log_joint"].values
    for i, value in enumerate(stored):
        th = {n: float(idata.constant_data[f"check_{n}"].values[i]) for n in NAMES}
        assert rel(value_and_grad(model3, th)[0], value) <= RTOL
