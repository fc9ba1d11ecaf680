"""The latent GP: whitening, the module of pattern 3, prediction from one draw.

References are NumPy/SciPy: the Cholesky factor and triangular solves of SciPy, the
Gaussian conditional written out with ``scipy.linalg.solve``, SciPy's normal and Poisson
log densities, and scikit-learn's RBF kernel for the Gram matrices.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.linalg
import scipy.stats
from numpyro import handlers
from numpyro.infer.util import log_density
from sklearn.gaussian_process import kernels as sk

from pyrox_lite import JITTER, PyroxModule, PyroxParam, gp, kernels, pyrox_method

jax.config.update("jax_enable_x64", True)

ELL, AMP, MU = 1.3, 0.8, 0.4
PRIORS = {
    "kernel.lengthscale": (math.log(1.5), 0.5),
    "kernel.amplitude": (0.0, 0.5),
}


def sk_gram(x1, x2, ell=ELL, amp=AMP):
    return amp**2 * sk.RBF(ell)(np.asarray(x1)[:, None], np.asarray(x2)[:, None])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(17)
    x = np.sort(rng.uniform(0.0, 8.0, 15))
    y = rng.poisson(np.exp(np.sin(x))).astype(float)
    return x, y, np.linspace(-1.0, 9.0, 9)


def latent_gp(**kwargs):
    kernel = gp.RBF(
        lengthscale=PyroxParam(ELL, prior=dist.LogNormal(*PRIORS["kernel.lengthscale"])),
        amplitude=PyroxParam(AMP, prior=dist.LogNormal(*PRIORS["kernel.amplitude"])),
        pyrox_name="kernel",
    )
    return gp.LatentGP(
        kernel, mean=PyroxParam(MU, prior=dist.Normal(0.0, 1.0)), pyrox_name="gp", **kwargs
    )


# ---------------------------------------------------------------------------
# whiten / unwhiten


def test_unwhiten_is_the_scipy_cholesky_factor_times_u(data, rng):
    x = data[0]
    u = rng.normal(size=x.size)
    chol = scipy.linalg.cholesky(sk_gram(x, x) + JITTER * np.eye(x.size), lower=True)
    np.testing.assert_allclose(gp.unwhiten(u, sk_gram(x, x)), chol @ u, rtol=1e-12, atol=1e-12)


def test_whiten_and_unwhiten_round_trip(data, rng):
    x = data[0]
    gram = sk_gram(x, x)
    u = rng.normal(size=x.size)
    np.testing.assert_allclose(gp.whiten(gp.unwhiten(u, gram), gram), u, rtol=1e-9, atol=1e-9)
    f = rng.normal(size=x.size)
    np.testing.assert_allclose(gp.unwhiten(gp.whiten(f, gram), gram), f, rtol=1e-9, atol=1e-9)
    chol = scipy.linalg.cholesky(gram + JITTER * np.eye(x.size), lower=True)
    want = scipy.linalg.solve_triangular(chol, f, lower=True)
    np.testing.assert_allclose(gp.whiten(f, gram), want, rtol=1e-10, atol=1e-10)


def test_whitening_works_under_jit_and_grad(data, rng):
    x = data[0]
    u = jnp.asarray(rng.normal(size=x.size))
    fn = jax.jit(lambda ell: jnp.sum(gp.unwhiten(u, kernels.rbf(x, x, ell, AMP)) ** 2))
    grad = jax.grad(fn)(ELL)
    eps = 1e-6
    fd = (fn(ELL + eps) - fn(ELL - eps)) / (2 * eps)
    assert np.isfinite(grad) and abs(grad - fd) <= 1e-5 * max(1.0, abs(fd))


# ---------------------------------------------------------------------------
# The three patterns give one log joint.


def model1(x, y=None):
    kernel = kernels.RBF(1.0, 1.0)
    ell = numpyro.sample("kernel.lengthscale", dist.LogNormal(*PRIORS["kernel.lengthscale"]))
    amp = numpyro.sample("kernel.amplitude", dist.LogNormal(*PRIORS["kernel.amplitude"]))
    mu = numpyro.sample("gp.mean", dist.Normal(0.0, 1.0))
    k = eqx.tree_at(lambda k: (k.lengthscale, k.amplitude), kernel, (ell, amp))
    u = numpyro.sample("gp.u", dist.Normal(jnp.zeros(len(x)), 1.0).to_event(1))
    f = mu + gp.unwhiten(u, k(x, x))
    numpyro.sample("y", dist.Poisson(jnp.exp(f)), obs=y)


class Kernel2(PyroxModule):
    @pyrox_method
    def __call__(self, x1, x2):
        ell = self.pyrox_sample("lengthscale", dist.LogNormal(*PRIORS["kernel.lengthscale"]))
        amp = self.pyrox_sample("amplitude", dist.LogNormal(*PRIORS["kernel.amplitude"]))
        return kernels.rbf(x1, x2, ell, amp)


class Latent2(PyroxModule):
    kernel: Kernel2

    @pyrox_method
    def __call__(self, x):
        mu = self.pyrox_sample("mean", dist.Normal(0.0, 1.0))
        u = self.pyrox_sample("u", dist.Normal(jnp.zeros(len(x)), 1.0).to_event(1))
        return mu + gp.unwhiten(u, self.kernel(x, x))


LATENT2 = Latent2(Kernel2(pyrox_name="kernel"), pyrox_name="gp")
LATENT3 = latent_gp()


def model2(x, y=None):
    numpyro.sample("y", dist.Poisson(jnp.exp(LATENT2(x))), obs=y)


def model3(x, y=None):
    numpyro.sample("y", dist.Poisson(jnp.exp(LATENT3(x))), obs=y)


def reference_log_joint(x, y, th):
    """SciPy's densities of the whitened model, with SciPy's Cholesky factor."""
    ell, amp, mu, u = (th[k] for k in ("kernel.lengthscale", "kernel.amplitude", "gp.mean", "gp.u"))
    chol = scipy.linalg.cholesky(sk_gram(x, x, ell, amp) + JITTER * np.eye(x.size), lower=True)
    f = mu + chol @ u
    (m_ell, s_ell), (m_amp, s_amp) = PRIORS["kernel.lengthscale"], PRIORS["kernel.amplitude"]
    return (
        scipy.stats.lognorm.logpdf(ell, s=s_ell, scale=math.exp(m_ell))
        + scipy.stats.lognorm.logpdf(amp, s=s_amp, scale=math.exp(m_amp))
        + scipy.stats.norm.logpdf(mu)
        + scipy.stats.norm.logpdf(u).sum()
        + scipy.stats.poisson.logpmf(y, np.exp(f)).sum()
    )


def test_three_patterns_have_one_log_joint_and_gradient(data):
    x, y, _ = data
    rng = np.random.default_rng(5)
    programs = {
        name: jax.jit(jax.value_and_grad(lambda t, m=model: log_density(m, (x, y), {}, t)[0]))
        for name, model in {"1": model1, "2": model2, "3": model3}.items()
    }
    for _ in range(3):
        th = {
            "kernel.lengthscale": float(np.exp(rng.normal(0.4, 0.3))),
            "kernel.amplitude": float(np.exp(rng.normal(0.0, 0.3))),
            "gp.mean": float(rng.normal()),
            "gp.u": rng.normal(size=x.size),
        }
        results = {}
        for name, fn in programs.items():
            value, grad = fn({k: jnp.asarray(v) for k, v in th.items()})
            results[name] = (float(value), np.concatenate([np.ravel(grad[k]) for k in th]))
        want = reference_log_joint(x, y, th)
        for name, (value, grad) in results.items():
            assert abs(value - want) <= 1e-10 * abs(want), (name, value, want)
            np.testing.assert_allclose(
                grad, results["3"][1], rtol=1e-10, atol=1e-10 * np.abs(grad).max()
            )


def test_the_module_registers_its_sites_under_their_names(data):
    x = data[0]
    trace = handlers.trace(handlers.seed(LATENT3, 0)).get_trace(x)
    sampled = [n for n, s in trace.items() if s["type"] == "sample"]
    assert sampled == ["kernel.lengthscale", "kernel.amplitude", "gp.mean", "gp.u"]
    assert trace["gp.u"]["value"].shape == (x.size,)
    assert trace["gp.f"]["type"] == "deterministic"
    assert LATENT3.site_names() == [
        "kernel.lengthscale",
        "kernel.amplitude",
        "gp.mean",
        "gp.u",
        "gp.f",
    ]
    named = latent_gp(latent_site="eta", f_site=None)
    assert named.site_names()[-1] == "gp.eta"
    trace = handlers.trace(handlers.seed(named, 0)).get_trace(x)
    assert "gp.eta" in trace and "gp.f" not in trace


def test_the_module_works_under_jit_and_vmap(data):
    x = data[0]
    sub = {"kernel.lengthscale": ELL, "kernel.amplitude": AMP, "gp.mean": MU}

    @jax.jit
    def f_of(u):
        return handlers.substitute(LATENT3, data={**sub, "gp.u": u})(x)

    us = np.random.default_rng(2).normal(size=(3, x.size))
    chol = scipy.linalg.cholesky(sk_gram(x, x) + JITTER * np.eye(x.size), lower=True)
    np.testing.assert_allclose(jax.vmap(f_of)(us), MU + us @ chol.T, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------
# Prediction


def reference_conditional(x, f, x_test, mu=MU):
    """The Gaussian conditional with the jittered training covariance, by NumPy."""
    c = sk_gram(x, x) + JITTER * np.eye(x.size)
    k_tx = sk_gram(x_test, x)
    mean = mu + k_tx @ scipy.linalg.solve(c, f - mu, assume_a="pos")
    cov = sk_gram(x_test, x_test) - k_tx @ scipy.linalg.solve(c, k_tx.T, assume_a="pos")
    return mean, np.diag(cov)


def test_prediction_matches_the_gaussian_conditional(data, rng):
    x, _, x_test = data
    f = MU + rng.normal(size=x.size)
    got = gp.predict_latent(kernels.RBF(ELL, AMP), x, f, x_test, mean=MU)
    mean, var = reference_conditional(x, f, x_test)
    np.testing.assert_allclose(got.mean, mean, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(got.var, var, rtol=1e-7, atol=1e-9)


def test_prediction_at_the_training_inputs_returns_f(data, rng):
    """At X the conditional is f itself up to the jitter: the mean differs from f by
    delta C^{-1} (f - mu), at most sqrt(delta) |u| for f = mu + L u, and the variance,
    delta diag(K C^{-1}), is at most delta."""
    x = data[0]
    u = rng.normal(size=x.size)
    f = MU + gp.unwhiten(u, sk_gram(x, x))
    got = gp.predict_latent(kernels.RBF(ELL, AMP), x, f, x, mean=MU)
    c = sk_gram(x, x) + JITTER * np.eye(x.size)
    gap = JITTER * scipy.linalg.solve(c, f - MU, assume_a="pos")
    np.testing.assert_allclose(got.mean, f - gap, rtol=0, atol=1e-8)
    assert np.max(np.abs(got.mean - f)) <= math.sqrt(JITTER) * np.linalg.norm(u)
    assert np.all(got.var >= 0) and np.all(got.var <= JITTER * (1 + 1e-6))


def test_the_module_predicts_from_one_substituted_draw(data, rng):
    x, _, x_test = data
    draw = {
        "kernel.lengthscale": ELL,
        "kernel.amplitude": AMP,
        "gp.mean": MU,
        "gp.u": rng.normal(size=x.size),
    }
    got = handlers.substitute(LATENT3.predict, data=draw)(x, x_test)
    chol = scipy.linalg.cholesky(sk_gram(x, x) + JITTER * np.eye(x.size), lower=True)
    mean, var = reference_conditional(x, MU + chol @ draw["gp.u"], x_test)
    np.testing.assert_allclose(got.mean, mean, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(got.var, var, rtol=1e-7, atol=1e-9)
    # One program over several draws: lax.map, one draw at a time.
    draws = {k: jnp.stack([jnp.asarray(v)] * 2) for k, v in draw.items()}
    many = jax.lax.map(lambda d: handlers.substitute(LATENT3.predict, data=d)(x, x_test), draws)
    np.testing.assert_allclose(many.mean[1], mean, rtol=1e-7, atol=1e-7)


# ---------------------------------------------------------------------------
# Bad input


def test_whitening_rejects_bad_input(data):
    x = data[0]
    gram = sk_gram(x, x)
    with pytest.raises(ValueError, match=r"`u` must have shape \(15,\).*got shape \(14,\)"):
        gp.unwhiten(np.zeros(14), gram)
    with pytest.raises(ValueError, match=r"`gram` must be a square matrix.*\(15, 14\)"):
        gp.whiten(np.zeros(15), gram[:, :14])
    with pytest.raises(ValueError, match=r"`f` contains 1 NaN"):
        gp.whiten(np.where(np.arange(15) == 3, np.nan, 0.0), gram)
    with pytest.raises(ValueError, match=r"`gram` contains"):
        gp.unwhiten(np.zeros(15), np.where(np.eye(15) > 0, np.inf, gram))
    with pytest.raises(ValueError, match=r"no data points"):
        gp.unwhiten(np.zeros(0), np.zeros((0, 0)))
    with pytest.raises(np.linalg.LinAlgError, match=r"Cholesky factorisation .* failed"):
        gp.unwhiten(np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]]))


def test_prediction_rejects_bad_input(data):
    x, _, x_test = data
    k, f = kernels.RBF(ELL, AMP), np.zeros(x.size)
    with pytest.raises(ValueError, match=r"same length; got 15 inputs and 14 targets"):
        gp.predict_latent(k, x, f[:14], x_test)
    with pytest.raises(ValueError, match=r"`x_test` contains 1 NaN"):
        gp.predict_latent(k, x, f, np.append(x_test, np.nan))
    with pytest.raises(ValueError, match=r"same number of features"):
        gp.predict_latent(k, x, f, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"`mean` must be a scalar"):
        gp.predict_latent(k, x, f, x_test, mean=np.zeros(2))
    with pytest.raises(ValueError, match=r"no data points"):
        gp.predict_latent(k, np.zeros(0), np.zeros(0), x_test)


def test_the_module_rejects_bad_input_and_bad_names(data):
    x = data[0]
    run = handlers.seed(LATENT3, 0)
    with pytest.raises(ValueError, match=r"`x` must have shape \(N,\) or \(N, D\)"):
        run(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"`x` contains 1 NaN"):
        run(np.append(x, np.inf))
    with pytest.raises(ValueError, match=r"no data points"):
        run(np.zeros(0))
    bad_u = {"gp.u": np.zeros(x.size - 1)}
    with pytest.raises(ValueError, match=r"'gp.u' has shape \(14,\).*x has 15 points"):
        handlers.substitute(run, data=bad_u)(x)
    with pytest.raises(TypeError, match=r"`kernel` must be a Parameterized kernel"):
        gp.LatentGP(kernels.RBF(1.0, 1.0))
    with pytest.raises(ValueError, match=r"`latent_site` must be a non-empty name"):
        latent_gp(latent_site="")
    with pytest.raises(ValueError, match=r"`f_site` must be a non-empty name"):
        latent_gp(f_site="gp.f")
    with pytest.raises(ValueError, match=r"both 'u'"):
        latent_gp(f_site="u")
    # The whitened site may not take a name the kernel already uses.
    with pytest.raises(ValueError, match=r"\['kernel.lengthscale'\] are used by more than one"):
        gp.LatentGP(gp.RBF(pyrox_name="kernel"), latent_site="lengthscale", pyrox_name="kernel")
    with pytest.raises(ValueError, match=r"`jitter` must be positive"):
        latent_gp(jitter=0.0)
    with pytest.raises(ValueError, match=r"Parameter 'mean': init value nan is not finite"):
        gp.LatentGP(gp.RBF(), mean=PyroxParam(np.nan))
