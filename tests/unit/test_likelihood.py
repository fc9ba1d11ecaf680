"""The GP marginal likelihood and the predictive, against SciPy, scikit-learn and
a direct NumPy computation."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density
from scipy.stats import multivariate_normal
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel

from pyrox_lite import JITTER, GPMarginal, PyroxParam, gp, gp_log_marginal, predict

jax.config.update("jax_enable_x64", True)

# Hyperparameters drawn from the book's hyperpriors (columns lengthscale, amplitude, noise).
THETAS = np.exp(np.random.default_rng(11).normal([0.0, 0.0, -2.0], 1.0, size=(4, 3)))
THETA_IDS = [f"theta{i}" for i in range(len(THETAS))]


# ---------------------------------------------------------------------------
# References: NumPy / SciPy / scikit-learn only.


def covariance_reference(case, x, lengthscale, amplitude, noise):
    """K + (noise**2 + jitter) I, with K from the per-pair closed form."""
    return case.gram(x, x, lengthscale, amplitude) + (noise**2 + JITTER) * np.eye(len(x))


def sklearn_regressor(case, x, y, lengthscale, amplitude, noise):
    """scikit-learn's exact GP on the same model: ConstantKernel holds amplitude**2,
    WhiteKernel holds noise**2 (added on the training diagonal only) and ``alpha``,
    also added to the training diagonal, plays the jitter."""
    kernel = ConstantKernel(amplitude**2) * case.sklearn(lengthscale) + WhiteKernel(noise**2)
    regressor = GaussianProcessRegressor(kernel=kernel, alpha=JITTER, optimizer=None)
    return regressor.fit(np.reshape(x, (len(x), -1)), y)


def assert_log_marginal_matches(log_marginal, case, x, y, theta, rtol=1e-8):
    """``log_marginal(case, x, y, lengthscale, amplitude, noise)`` against SciPy's
    multivariate normal and scikit-learn's log marginal likelihood."""
    ell, amp, noise = theta
    got = float(log_marginal(case, x, y, ell, amp, noise))
    cov = covariance_reference(case, x, ell, amp, noise)
    want_scipy = multivariate_normal.logpdf(y, mean=np.zeros(len(y)), cov=cov)
    want_sklearn = sklearn_regressor(case, x, y, ell, amp, noise).log_marginal_likelihood_value_
    np.testing.assert_allclose(got, want_scipy, rtol=rtol, err_msg="against scipy")
    np.testing.assert_allclose(got, want_sklearn, rtol=rtol, err_msg="against scikit-learn")


def predict_reference(case, x, y, x_test, lengthscale, amplitude, noise):
    """Predictive mean and variances by a direct dense computation."""
    cov = covariance_reference(case, x, lengthscale, amplitude, noise)
    k_tx = case.gram(x_test, x, lengthscale, amplitude)
    mean = k_tx @ np.linalg.solve(cov, y)
    var_f = amplitude**2 - np.einsum("ij,jk,ik->i", k_tx, np.linalg.inv(cov), k_tx)
    return mean, var_f, var_f + noise**2


# ---------------------------------------------------------------------------
# The log marginal likelihood in each of its forms.


def via_gp_log_marginal(case, x, y, ell, amp, noise):
    cov = case.fn(x, x, ell, amp) + (noise**2 + JITTER) * jnp.eye(len(x))
    return gp_log_marginal(y, cov)


def via_gp_marginal(case, x, y, ell, amp, noise):
    return GPMarginal(case.fn(x, x, ell, amp), noise).log_prob(y)


def via_exact_gp(case, x, y, ell, amp, noise):
    """ExactGP with learnable (param) sites: its log density is the likelihood alone."""
    model = gp.ExactGP(case.parameterized())
    params = {
        f"{case.name}.lengthscale": ell,
        f"{case.name}.amplitude": amp,
        "exactgp.noise": noise,
    }
    return log_density(model, (x, y), {}, params)[0]


FORMS = {
    "gp_log_marginal": via_gp_log_marginal,
    "GPMarginal": via_gp_marginal,
    "ExactGP": via_exact_gp,
}


@pytest.mark.parametrize("theta", THETAS, ids=THETA_IDS)
@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_log_marginal_matches_scipy_and_sklearn(kernel_case, form, theta, book_data):
    x, y = book_data
    assert_log_marginal_matches(form, kernel_case, x, y, theta)


def test_log_marginal_with_two_features(kernel_case, two_feature_data):
    x, y, _ = two_feature_data
    theta = (np.array([0.7, 1.8]), 1.2, 0.15)
    assert_log_marginal_matches(via_gp_marginal, kernel_case, x, y, theta)


def test_batched_log_marginal(rbf_case, small_data):
    x, _, _ = small_data
    n = len(x)
    noises = np.array([0.1, 0.3, 1.0])
    ys = np.random.default_rng(5).normal(size=(3, n))
    gram = np.asarray(rbf_case.fn(x, x, 0.9, 1.1))
    covs = gram + (noises[:, None, None] ** 2 + JITTER) * np.eye(n)
    want = [multivariate_normal.logpdf(y, np.zeros(n), c) for y, c in zip(ys, covs)]
    np.testing.assert_allclose(jax.jit(gp_log_marginal)(ys, covs), want, rtol=1e-10)
    batched = GPMarginal(gram, noises)
    assert batched.batch_shape == (3,) and batched.event_shape == (n,)
    # The distribution is a pytree: pass it into jit.
    np.testing.assert_allclose(jax.jit(lambda d, v: d.log_prob(v))(batched, ys), want, rtol=1e-10)


def test_gp_marginal_moments_and_samples(rbf_case):
    x = np.array([-1.0, 0.2, 0.5, 2.0])
    gram = rbf_case.gram(x, x, 0.9, 1.1)
    marginal = GPMarginal(gram, 0.2)
    cov = gram + (0.2**2 + JITTER) * np.eye(4)
    np.testing.assert_allclose(marginal.covariance_matrix, cov, rtol=1e-15)
    np.testing.assert_array_equal(marginal.mean, np.zeros(4))
    np.testing.assert_allclose(marginal.variance, np.diagonal(cov), rtol=1e-15)
    draws = jax.jit(lambda d, key: d.sample(key, (20000,)))(marginal, jax.random.key(0))
    assert draws.shape == (20000, 4)
    # Sample covariance of 20000 draws: entries within a few standard errors (<= 0.013 here).
    np.testing.assert_allclose(np.cov(np.asarray(draws).T), cov, atol=0.05)


# ---------------------------------------------------------------------------
# The predictive. The kernel module is passed into the compiled predict, so one
# compilation per kernel type serves every hyperparameter value.

PREDICT_TOL = {"rtol": 1e-8, "atol": 1e-10}
jit_predict = eqx.filter_jit(predict)


def assert_prediction_matches(prediction, case, x, y, x_test, ell, amp, noise):
    mean, var_f, var_y = predict_reference(case, x, y, x_test, ell, amp, noise)
    np.testing.assert_allclose(prediction.mean, mean, **PREDICT_TOL)
    np.testing.assert_allclose(prediction.var_f, var_f, **PREDICT_TOL)
    np.testing.assert_allclose(prediction.var_y, var_y, **PREDICT_TOL)


@pytest.mark.parametrize("theta", THETAS, ids=THETA_IDS)
def test_predict_matches_dense_numpy(kernel_case, theta, small_data):
    x, y, x_test = small_data
    ell, amp, noise = theta
    prediction = jit_predict(kernel_case.module(ell, amp), x, y, x_test, noise)
    assert_prediction_matches(prediction, kernel_case, x, y, x_test, ell, amp, noise)


def test_predict_eagerly_on_the_book_data(rbf_case, book_data):
    x, y = book_data
    x_test = np.linspace(-12.0, 12.0, 25)
    ell, amp, noise = THETAS[0]
    prediction = predict(rbf_case.module(ell, amp), x, y, x_test, noise)
    assert_prediction_matches(prediction, rbf_case, x, y, x_test, ell, amp, noise)


def test_predict_matches_sklearn(kernel_case, small_data):
    """scikit-learn's predictive variance includes the WhiteKernel: it is var_y."""
    x, y, x_test = small_data
    ell, amp, noise = THETAS[0]
    prediction = jit_predict(kernel_case.module(ell, amp), x, y, x_test, noise)
    mean, std = sklearn_regressor(kernel_case, x, y, ell, amp, noise).predict(
        x_test[:, None], return_std=True
    )
    np.testing.assert_allclose(prediction.mean, mean, **PREDICT_TOL)
    np.testing.assert_allclose(prediction.var_y, std**2, **PREDICT_TOL)


def test_predict_with_two_features(kernel_case, two_feature_data):
    x, y, x_test = two_feature_data
    ell, amp, noise = np.array([0.7, 1.8]), 1.2, 0.15
    prediction = jit_predict(kernel_case.module(ell, amp), x, y, x_test, noise)
    assert_prediction_matches(prediction, kernel_case, x, y, x_test, ell, amp, noise)


def test_predict_under_vmap_over_draws(kernel_case, small_data):
    x, y, x_test = small_data
    ells, amps, noises = THETAS.T
    kernel_batch = kernel_case.module(ells, amps)  # one kernel per draw, leaves of shape (4,)
    batch = jax.jit(jax.vmap(lambda k, s: predict(k, x, y, x_test, s)))(kernel_batch, noises)
    assert batch.mean.shape == batch.var_f.shape == batch.var_y.shape == (len(THETAS), len(x_test))
    for i, (ell, amp, noise) in enumerate(THETAS):
        draw = type(batch)(*(moment[i] for moment in batch))
        assert_prediction_matches(draw, kernel_case, x, y, x_test, ell, amp, noise)


def test_predict_under_lax_map_over_draws(rbf_case, small_data):
    """The loop the predict docstring recommends over posterior draws: one compiled
    program, one draw at a time."""
    x, y, x_test = small_data
    batch = jax.jit(
        lambda draws: jax.lax.map(
            lambda d: predict(rbf_case.module(d[0], d[1]), x, y, x_test, d[2]), draws
        )
    )(THETAS)
    assert batch.mean.shape == (len(THETAS), len(x_test))
    for i, (ell, amp, noise) in enumerate(THETAS):
        draw = type(batch)(*(moment[i] for moment in batch))
        assert_prediction_matches(draw, rbf_case, x, y, x_test, ell, amp, noise)


def test_exact_gp_predict_matches_predict(kernel_case, small_data):
    x, y, x_test = small_data
    ell, amp, noise = THETAS[1]
    model = gp.ExactGP(
        kernel_case.parameterized(lengthscale=PyroxParam(ell), amplitude=PyroxParam(amp)),
        noise=PyroxParam(noise),
    )
    # Outside any handler: the init values.
    got = model.predict(x, y, x_test)
    want = jit_predict(kernel_case.module(ell, amp), x, y, x_test, noise)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-13)
    # Inside a handler: the values of the sites.
    ell2, amp2, noise2 = THETAS[2]
    name = kernel_case.name
    sites = {f"{name}.lengthscale": ell2, f"{name}.amplitude": amp2, "exactgp.noise": noise2}
    got = eqx.filter_jit(lambda m: handlers.substitute(m.predict, data=sites)(x, y, x_test))(model)
    want = jit_predict(kernel_case.module(ell2, amp2), x, y, x_test, noise2)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-13)
