"""The models the benchmark times: one Bayesian GP regression, written seven ways.

Every model is the book's model (RBF kernel, ``y ~ N(0, K + (noise**2 + 1e-6) I)``,
LogNormal hyperpriors), so every potential takes the same value at the same θ;
``run.py`` checks that before timing anything. The three patterns are written
exactly as notebooks/01-03 write them. The others are the yardsticks:

* ``floor``: the log joint in bare ``jax.numpy`` (Cholesky, triangular solve,
  log-determinant) left to JAX's automatic differentiation; no NumPyro.
* ``numpyro_example``: the style of NumPyro's own ``examples/gp.py``, a kernel in
  ``jax.numpy`` and ``dist.MultivariateNormal(covariance_matrix=...)``.
* ``tinygp``: tinygp's ``GaussianProcess`` as a NumPyro distribution.
* ``gpjax``: GPJax's conjugate marginal log-likelihood as a NumPyro factor.

Import this module only after ``run.py`` has set the thread environment.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

import pyrox_lite
from pyrox_lite import JITTER, GPMarginal, PyroxModule, PyroxParam, pyrox_method

NAMES = ("lengthscale", "amplitude", "noise")
PRIORS = {
    "lengthscale": dist.LogNormal(0.0, 1.0),
    "amplitude": dist.LogNormal(0.0, 1.0),
    "noise": dist.LogNormal(-2.0, 1.0),
}


class Model(NamedTuple):
    """A NumPyro model and the site that holds each of lengthscale, amplitude, noise."""

    fn: Callable
    sites: dict[str, str]


def _sample_hyperparameters():
    return tuple(numpyro.sample(name, PRIORS[name]) for name in NAMES)


# ---------------------------------------------------------------------------
# Pattern 1 (notebooks/01_tree_at.ipynb): plain Equinox kernel, eqx.tree_at.

_plain_kernel = pyrox_lite.kernels.RBF(lengthscale=1.0, amplitude=1.0)


def _pattern1_hyperparameters():
    lengthscale = numpyro.sample("lengthscale", dist.LogNormal(0.0, 1.0))
    amplitude = numpyro.sample("amplitude", dist.LogNormal(0.0, 1.0))
    noise = numpyro.sample("noise", dist.LogNormal(-2.0, 1.0))
    k = eqx.tree_at(lambda k: (k.lengthscale, k.amplitude), _plain_kernel, (lengthscale, amplitude))
    return k, noise


def pattern1(x, y=None):
    k, noise = _pattern1_hyperparameters()
    return numpyro.sample("y", GPMarginal(k(x, x), noise), obs=y)


# ---------------------------------------------------------------------------
# Pattern 2 (notebooks/02_pyrox_module.ipynb): a PyroxModule samples its own θ.


class RBFKernel(PyroxModule):
    """RBF kernel whose lengthscale and amplitude are NumPyro sample sites."""

    @pyrox_method
    def __call__(self, x1, x2):
        lengthscale = self.pyrox_sample("lengthscale", dist.LogNormal(0.0, 1.0))
        amplitude = self.pyrox_sample("amplitude", dist.LogNormal(0.0, 1.0))
        return pyrox_lite.kernels.rbf(x1, x2, lengthscale, amplitude)


_module_kernel = RBFKernel(pyrox_name="kernel")


def pattern2(x, y=None):
    gram = _module_kernel(x, x)
    noise = numpyro.sample("noise", dist.LogNormal(-2.0, 1.0))
    return numpyro.sample("y", GPMarginal(gram, noise), obs=y)


# ---------------------------------------------------------------------------
# Pattern 3 (notebooks/03_parameterized.ipynb): PyroxParam fields, ExactGP.

_gp = pyrox_lite.gp.ExactGP(
    pyrox_lite.gp.RBF(
        lengthscale=PyroxParam(1.0, prior=dist.LogNormal(0.0, 1.0)),
        amplitude=PyroxParam(1.0, prior=dist.LogNormal(0.0, 1.0)),
        pyrox_name="kernel",
    ),
    noise=PyroxParam(0.1, prior=dist.LogNormal(-2.0, 1.0)),
    pyrox_name="gp",
)


def pattern3(x, y=None):
    return _gp(x, y)


# ---------------------------------------------------------------------------
# NumPyro's GP example style: jax.numpy kernel, dist.MultivariateNormal.


def numpyro_example(x, y=None):
    lengthscale, amplitude, noise = _sample_hyperparameters()
    delta_sq = jnp.power((x[:, None] - x) / lengthscale, 2.0)
    k = amplitude**2 * jnp.exp(-0.5 * delta_sq) + (noise**2 + JITTER) * jnp.eye(x.shape[0])
    numpyro.sample(
        "y", dist.MultivariateNormal(loc=jnp.zeros(x.shape[0]), covariance_matrix=k), obs=y
    )


# ---------------------------------------------------------------------------
# tinygp: GaussianProcess(amplitude**2 * ExpSquared(lengthscale), diag=noise**2 + jitter).


def tinygp_model(x, y=None):
    import tinygp

    lengthscale, amplitude, noise = _sample_hyperparameters()
    kernel = amplitude**2 * tinygp.kernels.ExpSquared(scale=lengthscale)
    gp = tinygp.GaussianProcess(kernel, x, diag=noise**2 + JITTER)
    numpyro.sample("y", gp.numpyro_dist(), obs=y)


# ---------------------------------------------------------------------------
# GPJax: Prior(RBF(lengthscale, variance=amplitude**2), jitter=1e-6) * Gaussian(noise).


def gpjax_model(x, y=None):
    import gpjax as gpx

    lengthscale, amplitude, noise = _sample_hyperparameters()
    prior = gpx.gps.Prior(
        kernel=gpx.kernels.RBF(lengthscale=lengthscale, variance=amplitude**2),
        mean_function=gpx.mean_functions.Zero(),
        jitter=JITTER,
    )
    posterior = prior * gpx.likelihoods.Gaussian(obs_stddev=noise)
    data = gpx.Dataset(X=x[:, None], y=y[:, None])
    numpyro.factor("y", gpx.objectives.conjugate_mll(posterior, data))


MODELS = {
    "pattern1": Model(pattern1, {name: name for name in NAMES}),
    "pattern2": Model(
        pattern2,
        {"lengthscale": "kernel.lengthscale", "amplitude": "kernel.amplitude", "noise": "noise"},
    ),
    "pattern3": Model(pattern3, dict(zip(NAMES, _gp.site_names()))),
    "numpyro_example": Model(numpyro_example, {name: name for name in NAMES}),
    "tinygp": Model(tinygp_model, {name: name for name in NAMES}),
    "gpjax": Model(gpjax_model, {name: name for name in NAMES}),
}


# ---------------------------------------------------------------------------
# The autodiff floor: the same potential over z = log θ, in bare jax.numpy.

_LOG_2PI = math.log(2.0 * math.pi)
_PRIOR_LOC = jnp.array([0.0, 0.0, -2.0])


def floor_potential(x, y):
    """-log p(θ, y) - log|dθ/dz| at z = log θ (ordered as NAMES), differentiated by JAX."""
    n = x.shape[0]

    def potential(z):
        lengthscale, amplitude, noise = jnp.exp(z)
        k = amplitude**2 * jnp.exp(-0.5 * ((x[:, None] - x[None, :]) / lengthscale) ** 2)
        cov = k + (noise**2 + JITTER) * jnp.eye(n)
        chol = jnp.linalg.cholesky(cov)
        alpha = jax.scipy.linalg.cho_solve((chol, True), y)
        log_lik = -0.5 * y @ alpha - jnp.sum(jnp.log(jnp.diagonal(chol))) - 0.5 * n * _LOG_2PI
        # LogNormal(mu, 1) log density of θ plus the log-Jacobian z of θ = exp(z).
        log_prior = jnp.sum(-0.5 * (z - _PRIOR_LOC) ** 2 - z - 0.5 * _LOG_2PI) + jnp.sum(z)
        return -(log_lik + log_prior)

    return potential
