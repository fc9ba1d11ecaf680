"""Sparse GPs (pyrox_lite.sparse): the bounds against the exact GP and against a plain
NumPy/SciPy implementation written here, the minibatch estimate, the three patterns, the
NumPyro route, sharding across two devices, and bad input.

The jitter. ``gp_log_marginal`` is given the exact covariance ``K + (sigma^2 + delta) I``, as
``GPMarginal`` builds it. ``pyrox_lite.sparse`` reads the same ``delta`` as a white-noise part
of the latent process, ``k~(x, x') = k(x, x') + delta [x = x']``: ``K_ZZ`` gets ``delta I``, each
prior variance ``k~(x_i, x_i)`` gets ``delta``, and a data input that coincides with an
inducing input shares that white noise (``K~_XZ`` gets ``delta`` there). For inputs without
duplicates both describe ``y ~ N(0, K + (sigma^2 + delta) I)``; with ``Z = X``,
``Q = K~_XZ K~_ZZ^{-1} K~_ZX = K + delta I`` and the trace term vanishes, so the collapsed
bound is the exact log marginal likelihood. The reference below implements that kernel
entry by entry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

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
from numpyro.distributions.kl import kl_divergence
from numpyro.infer import TraceMeanField_ELBO

from pyrox_lite import (
    JITTER,
    PyroxModule,
    PyroxParam,
    gp,
    gp_log_marginal,
    kernels,
    predict,
    pyrox_method,
    sparse,
)

jax.config.update("jax_enable_x64", True)

RNG = np.random.default_rng(18)
N = 80
X = np.sort(RNG.uniform(-3.0, 3.0, N))
Y = np.sin(2.0 * X) + 0.3 * RNG.normal(size=N)
X2 = RNG.uniform(-2.0, 2.0, (N, 2))
Y2 = np.cos(X2[:, 0]) * X2[:, 1] + 0.2 * RNG.normal(size=N)
ELL, AMP, NOISE = 0.8, 1.1, 0.35
KERNEL = kernels.RBF(ELL, AMP)


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ---------------------------------------------------------------------------
# The reference: NumPy and SciPy, N x N matrices, no whitening.


def ref_kernel(a, b, ell=ELL, amp=AMP, jitter=JITTER):
    """k~(a, b) = amp^2 exp(-|a - b|^2 / 2 ell^2) + jitter [a = b], entry by entry."""
    a, b = np.atleast_2d(a.T).T, np.atleast_2d(b.T).T
    out = np.empty((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            r2 = float(np.sum((p - q) ** 2)) / ell**2
            out[i, j] = amp**2 * np.exp(-0.5 * r2) + (jitter if np.array_equal(p, q) else 0.0)
    return out


def ref_collapsed(x, y, z, noise=NOISE):
    k_zz, k_xz, k_xx = ref_kernel(z, z), ref_kernel(x, z), ref_kernel(x, x)
    q = k_xz @ np.linalg.solve(k_zz, k_xz.T)
    fit = scipy.stats.multivariate_normal(
        np.zeros(len(y)), q + noise**2 * np.eye(len(y)), allow_singular=True
    ).logpdf(y)
    return fit - np.trace(k_xx - q) / (2 * noise**2)


def ref_q_f(x, z, q_mean, q_sqrt):
    """Marginals of q(f) from the unwhitened q(u) = N(L m, L S S^T L^T)."""
    k_zz, k_xz = ref_kernel(z, z), ref_kernel(x, z)
    chol = np.linalg.cholesky(k_zz)
    mu_u, sigma_u = chol @ q_mean, chol @ q_sqrt @ q_sqrt.T @ chol.T
    proj = np.linalg.solve(k_zz, k_xz.T).T  # K_XZ K_ZZ^{-1}
    mean = proj @ mu_u
    cov = ref_kernel(x, x) - proj @ k_xz.T + proj @ sigma_u @ proj.T
    return mean, np.diag(cov), k_zz, mu_u, sigma_u


def ref_svgp(x, y, z, q_mean, q_sqrt, noise=NOISE):
    mean, var, k_zz, mu_u, sigma_u = ref_q_f(x, z, q_mean, q_sqrt)
    expected = np.sum(scipy.stats.norm(mean, noise).logpdf(y) - var / (2 * noise**2))
    # KL(N(mu_u, Sigma_u) || N(0, K_ZZ)), the textbook formula, unwhitened
    m = len(mu_u)
    kl = 0.5 * (
        np.trace(np.linalg.solve(k_zz, sigma_u))
        + mu_u @ np.linalg.solve(k_zz, mu_u)
        - m
        + np.linalg.slogdet(k_zz)[1]
        - np.linalg.slogdet(sigma_u)[1]
    )
    return expected - kl


def random_q(m, seed=0):
    rng = np.random.default_rng(seed)
    s = np.tril(0.3 * rng.normal(size=(m, m)))
    np.fill_diagonal(s, np.exp(0.3 * rng.normal(size=m)))
    return rng.normal(size=m), s


# ---------------------------------------------------------------------------
# The collapsed bound

# Compiled whole, once per shape: run op by op, each of their operations would be compiled on
# its own for every new shape, most of these tests' time. The bad-input tests call them as is.
collapsed, svgp_elbo, sparse_predict = (
    jax.jit(f) for f in (sparse.collapsed, sparse.svgp_elbo, sparse.sparse_predict)
)


@pytest.mark.parametrize("x, y", [(X, Y), (X2, Y2)], ids=["1d", "2d"])
def test_collapsed_bound_with_z_equal_x_is_the_exact_log_marginal(x, y):
    exact = gp_log_marginal(y, KERNEL(x, x) + (NOISE**2 + JITTER) * np.eye(N))
    bound = collapsed(KERNEL, x, y, x, NOISE).bound
    assert rel(bound, exact) <= 1e-8, (bound, exact)


def test_collapsed_bound_with_other_z_is_lower():
    exact = float(gp_log_marginal(Y, KERNEL(X, X) + (NOISE**2 + JITTER) * np.eye(N)))
    gaps = []
    for m, seed in [(3, 0), (10, 1), (30, 2), (79, 3)]:
        z = np.random.default_rng(seed).uniform(-3.0, 3.0, m)
        gaps.append(exact - float(collapsed(KERNEL, X, Y, z, NOISE).bound))
    assert all(g > 0 for g in gaps), gaps
    assert gaps[0] > gaps[1] > 1e-6, gaps  # more inducing points, a tighter bound here


@pytest.mark.parametrize("x, y, m", [(X, Y, 12), (X2, Y2, 15)], ids=["1d", "2d"])
def test_bounds_and_predictions_equal_the_numpy_reference(x, y, m):
    z = x[:: N // m][:m] + 0.01  # near the data, never on it
    q_mean, q_sqrt = random_q(m)
    assert rel(collapsed(KERNEL, x, y, z, NOISE).bound, ref_collapsed(x, y, z)) <= 1e-9
    assert (
        rel(
            svgp_elbo(KERNEL, x, y, z, q_mean, q_sqrt, NOISE),
            ref_svgp(x, y, z, q_mean, q_sqrt),
        )
        <= 1e-9
    )
    x_test = x[:7] + 0.05
    pred = sparse_predict(KERNEL, z, q_mean, q_sqrt, x_test, NOISE)
    mean, var, *_ = ref_q_f(x_test, z, q_mean, q_sqrt)
    assert rel(pred.mean, mean) <= 1e-9
    assert rel(pred.var_f, var) <= 1e-9
    np.testing.assert_allclose(pred.var_y, var + NOISE**2, rtol=1e-9)


def test_with_z_equal_x_the_predictions_are_the_exact_gps():
    _, q_mean, q_sqrt = collapsed(KERNEL, X, Y, X, NOISE)
    x_test = np.linspace(-3.2, 3.2, 9) + 1e-3
    ours = sparse_predict(KERNEL, X, q_mean, q_sqrt, x_test, NOISE)
    exact = predict(KERNEL, X, Y, x_test, NOISE)
    assert rel(ours.mean, exact.mean) <= 1e-7
    # the latent process of the sparse GP carries the jitter's white noise, delta
    np.testing.assert_allclose(ours.var_f, exact.var_f + JITTER, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------
# The uncollapsed bound


def test_svgp_bound_at_the_optimal_q_is_the_collapsed_bound():
    z = np.linspace(-2.9, 2.9, 14)
    bound, q_mean, q_sqrt = collapsed(KERNEL, X, Y, z, NOISE)
    best = svgp_elbo(KERNEL, X, Y, z, q_mean, q_sqrt, NOISE)
    assert rel(best, bound) <= 1e-8
    # ... and it is the maximum over q: moving away from it lowers the bound
    for seed in range(3):
        dm, ds = random_q(14, seed)
        worse = svgp_elbo(KERNEL, X, Y, z, q_mean + 0.05 * dm, q_sqrt * 1.05, NOISE)
        assert worse < best
    grad = jax.grad(lambda m: svgp_elbo(KERNEL, X, Y, z, m, q_sqrt, NOISE))(q_mean)
    assert np.max(np.abs(grad)) <= 1e-8


def conditioned(model, theta):
    return handlers.condition(model, theta)


def numpyro_elbo(model, guide, params, key=0, **kwargs):
    """NumPyro's TraceMeanField ELBO at ``params`` (constrained values)."""
    return -TraceMeanField_ELBO().loss(jax.random.key(key), params, model, guide, **kwargs)


THETA = {"rbf.lengthscale": ELL, "rbf.amplitude": AMP, "svgp.noise": NOISE}
PRIORS = {
    "rbf.lengthscale": dist.LogNormal(0.0, 1.0),
    "rbf.amplitude": dist.LogNormal(0.0, 1.0),
    "svgp.noise": dist.LogNormal(-1.0, 1.0),
}
M = 10
Z0 = np.linspace(-2.5, 2.5, M) + 0.013


def log_prior(theta):
    return sum(float(PRIORS[n].log_prob(theta[n])) for n in PRIORS)


def svgp3():
    return sparse.SVGP(
        gp.RBF(
            lengthscale=PyroxParam(1.0, prior=PRIORS["rbf.lengthscale"]),
            amplitude=PyroxParam(1.0, prior=PRIORS["rbf.amplitude"]),
        ),
        inducing=PyroxParam(Z0),
        noise=PyroxParam(0.3, prior=PRIORS["svgp.noise"]),
    )


def test_the_numpyro_sites_give_the_bound_plus_the_log_prior():
    module = svgp3()
    q_mean, q_sqrt = random_q(M, 4)
    params = {"svgp.inducing": Z0, "svgp.u_loc": q_mean, "svgp.u_scale_tril": q_sqrt}
    elbo = numpyro_elbo(conditioned(module, THETA), module.guide, params, x=X, y=Y)
    want = ref_svgp(X, Y, Z0, q_mean, q_sqrt) + log_prior(THETA)
    assert rel(elbo, want) <= 1e-9, (elbo, want)


def test_the_minibatch_estimate_is_unbiased():
    module = svgp3()
    q_mean, q_sqrt = random_q(M, 5)
    params = {"svgp.inducing": Z0, "svgp.u_loc": q_mean, "svgp.u_scale_tril": q_sqrt}
    model = conditioned(module, THETA)
    loss = TraceMeanField_ELBO().loss

    @jax.jit
    def estimate(key):
        return -loss(key, params, model, module.guide, X, Y, batch_size=8)

    values = np.array(jax.lax.map(estimate, jax.random.split(jax.random.key(1), 1500)))
    full = float(numpyro_elbo(model, module.guide, params, x=X, y=Y))
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert values.std() > 1.0  # the estimates do vary from batch to batch
    assert abs(values.mean() - full) <= 3 * se, (values.mean(), full, se)


def test_the_kl_from_the_whitened_prior_is_numpyros_gaussian_kl_without_a_cubic_solve():
    q_mean, q_sqrt = random_q(M, 6)
    guide = dist.MultivariateNormal(q_mean, scale_tril=q_sqrt)
    general = dist.MultivariateNormal(jnp.zeros(M), scale_tril=jnp.eye(M))
    ours = kl_divergence(guide, sparse.WhitenedPrior(M))
    assert rel(ours, kl_divergence(guide, general)) <= 1e-12
    assert rel(ours, sparse.whitened_kl(q_mean, q_sqrt)) == 0.0

    def solves(prior):
        jaxpr = jax.make_jaxpr(
            lambda s: kl_divergence(dist.MultivariateNormal(q_mean, scale_tril=s), prior)
        )
        return str(jaxpr(q_sqrt)).count("triangular_solve")

    assert solves(general) >= 1 and solves(sparse.WhitenedPrior(M)) == 0


def test_the_minibatch_indices_are_drawn_at_once():
    """The plate's own draw of B of N indices is a scan of B steps on CPU; the model draws
    them in one call and hands them to the plate, which still scales by N / B."""
    module = svgp3()
    params = {"svgp.inducing": Z0, "svgp.u_loc": jnp.zeros(M), "svgp.u_scale_tril": jnp.eye(M)}
    model = handlers.substitute(conditioned(module, THETA), data=params)

    def run(key):
        return handlers.trace(handlers.seed(model, key)).get_trace(X, Y, batch_size=8)

    trace = run(jax.random.key(3))
    idx = np.asarray(trace["data"]["value"])
    assert idx.shape == (8,) and idx.min() >= 0 and idx.max() < N
    assert trace["y"]["scale"] == pytest.approx(N / 8)
    np.testing.assert_array_equal(trace["y"]["value"], Y[idx])
    assert "scan" not in str(jax.make_jaxpr(lambda k: run(k)["y"]["value"])(jax.random.key(3)))


# ---------------------------------------------------------------------------
# Three patterns, one model

TEMPLATE = sparse.SparseGP(kernels.RBF(1.0, 1.0), inducing=Z0, noise=1.0)


def model1(x, y, batch_size=None):
    theta = {n: numpyro.sample(n, PRIORS[n]) for n in PRIORS}
    z = numpyro.param("svgp.inducing", jnp.asarray(Z0))
    sgp = eqx.tree_at(
        lambda s: (s.kernel.lengthscale, s.kernel.amplitude, s.inducing, s.noise),
        TEMPLATE,
        (theta["rbf.lengthscale"], theta["rbf.amplitude"], z, theta["svgp.noise"]),
    )
    sgp.observe(x, y, batch_size=batch_size)


class Kernel2(PyroxModule):
    @pyrox_method
    def __call__(self, a, b):
        return kernels.rbf(
            a,
            b,
            self.pyrox_sample("lengthscale", PRIORS["rbf.lengthscale"]),
            self.pyrox_sample("amplitude", PRIORS["rbf.amplitude"]),
        )


class Sparse2(PyroxModule):
    kernel: Kernel2

    @pyrox_method
    def __call__(self, x, y, batch_size=None):
        z = self.pyrox_param("inducing", jnp.asarray(Z0))
        noise = self.pyrox_sample("noise", PRIORS["svgp.noise"])
        sparse.svgp_observe(
            self.kernel, x, y, z, noise, site=self.site_name("u"), batch_size=batch_size
        )


model2 = Sparse2(Kernel2(pyrox_name="rbf"), pyrox_name="svgp")
model3 = svgp3()


def guide(x, y, batch_size=None):
    return sparse.svgp_guide(M, "svgp.u")


@pytest.mark.parametrize("batch_size", [None, 16])
def test_the_three_patterns_give_the_same_elbo_and_gradients(batch_size):
    q_mean, q_sqrt = random_q(M, 6)
    point = {**THETA, "svgp.inducing": Z0 + 0.1, "svgp.u_loc": q_mean, "svgp.u_scale_tril": q_sqrt}

    def value_and_grad(model):
        def f(p):
            theta = {n: p[n] for n in PRIORS}
            rest = {n: v for n, v in p.items() if n not in PRIORS}
            return -TraceMeanField_ELBO().loss(
                jax.random.key(3),
                rest,
                conditioned(model, theta),
                guide,
                X,
                Y,
                batch_size=batch_size,
            )

        value, grad = jax.jit(jax.value_and_grad(f))(jax.tree.map(jnp.asarray, point))
        return float(value), grad

    results = [value_and_grad(m) for m in (model1, model2, model3)]
    for value, grad in results[:2]:
        assert rel(value, results[2][0]) <= 1e-10
        for name in point:
            assert rel(grad[name], results[2][1][name]) <= 1e-10, name
    assert all(np.all(np.asarray(g) != 0) for g in results[2][1].values() if g.ndim == 0)
    if batch_size is None:
        want = ref_svgp(X, Y, Z0 + 0.1, q_mean, q_sqrt) + log_prior(THETA)
        assert rel(results[2][0], want) <= 1e-9


# ---------------------------------------------------------------------------
# Sharding across two devices

SHARDED = textwrap.dedent(
    """
    import json, os
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from numpyro.infer import TraceMeanField_ELBO
    from numpyro import handlers
    from pyrox_lite import kernels, sparse

    assert jax.device_count() == 2, jax.devices()
    rng = np.random.default_rng(0)
    n, b, m = 5000, 256, 12
    x = rng.uniform(-3, 3, n); y = np.sin(2 * x) + 0.3 * rng.normal(size=n)
    idx = rng.choice(n, b, replace=False)
    z = np.linspace(-2.5, 2.5, m) + 0.01
    q_mean, s = rng.normal(size=m), np.tril(0.2 * rng.normal(size=(m, m))) + np.eye(m)

    def model(xb, yb, ell):
        sgp = sparse.SparseGP(kernels.RBF(ell, 1.1), inducing=z, noise=0.35)
        sgp.observe(xb, yb, num_data=n)

    def guide(xb, yb, ell):
        return sparse.svgp_guide(m)

    @jax.jit
    def elbo(params, ell, xb, yb):
        return -TraceMeanField_ELBO().loss(jax.random.key(0), params, model, guide, xb, yb, ell)

    f = jax.value_and_grad(elbo, argnums=(0, 1))
    params = {"svgp.u_loc": jnp.asarray(q_mean), "svgp.u_scale_tril": jnp.asarray(s)}
    xb, yb = jnp.asarray(x[idx]), jnp.asarray(y[idx])
    one = f(params, 0.8, xb, yb)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    split = NamedSharding(mesh, P("data"))
    xs, ys = jax.device_put(xb, split), jax.device_put(yb, split)
    assert len(xs.sharding.device_set) == 2 and xs.addressable_shards[0].data.shape == (b // 2,)
    two = f(jax.device_put(params, NamedSharding(mesh, P())), 0.8, xs, ys)
    full = float(sparse.svgp_elbo(kernels.RBF(0.8, 1.1), xb, yb, z, q_mean, s, 0.35, num_data=n))
    print(json.dumps({
        "one": float(one[0]), "two": float(two[0]), "pure": full,
        "grads_one": [np.asarray(g).ravel().tolist() for g in jax.tree.leaves(one[1])],
        "grads_two": [np.asarray(g).ravel().tolist() for g in jax.tree.leaves(two[1])],
    }))
    """
)


def test_a_minibatch_sharded_over_two_devices_gives_the_same_elbo_and_gradient():
    env = dict(
        os.environ,
        XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
        OPENBLAS_NUM_THREADS="1",
    )
    run = subprocess.run(
        [sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert rel(out["one"], out["pure"]) <= 1e-10
    assert rel(out["two"], out["one"]) <= 1e-10
    for a, b in zip(out["grads_two"], out["grads_one"], strict=True):
        assert rel(a, b) <= 1e-10


# ---------------------------------------------------------------------------
# Bad input


def test_bad_input_is_reported_by_name():
    z = np.linspace(-2, 2, 5)
    with pytest.raises(ValueError, match="same number of features"):
        sparse.collapsed(KERNEL, X2, Y2, z, NOISE)
    with pytest.raises(ValueError, match=r"M <= N"):
        sparse.collapsed(KERNEL, X[:4], Y[:4], z, NOISE)
    with pytest.raises(ValueError, match="`batch_size` must be an integer between 1"):
        handlers.seed(svgp3(), 0)(X, Y, batch_size=N + 1)
    with pytest.raises(ValueError, match="`batch_size`"):
        handlers.seed(svgp3(), 0)(X, Y, batch_size=0)
    bad_y = Y.copy()
    bad_y[3] = np.nan
    with pytest.raises(ValueError, match="`y` contains 1 NaN"):
        sparse.collapsed(KERNEL, X, bad_y, z, NOISE)
    with pytest.raises(ValueError, match="`y` contains 1 NaN"):
        handlers.seed(svgp3(), 0)(X, bad_y)
    bad_z = z.copy()
    bad_z[0] = np.inf
    with pytest.raises(ValueError, match="`z` contains 1 NaN or infinite"):
        sparse.svgp_elbo(KERNEL, X, Y, bad_z, np.zeros(5), np.eye(5), NOISE)
    with pytest.raises(ValueError, match=r"q\(u\) must have a mean of shape \(5,\)"):
        sparse.svgp_elbo(KERNEL, X, Y, z, np.zeros(4), np.eye(4), NOISE)
    with pytest.raises(ValueError, match="`noise` must be positive"):
        sparse.collapsed(KERNEL, X, Y, z, -1.0)
    with pytest.raises(ValueError, match=r"inducing.*shape \(M,\) or \(M, D\)"):
        sparse.SVGP(gp.RBF(), inducing=PyroxParam(np.zeros((2, 2, 2))))
