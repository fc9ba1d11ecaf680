"""The hand-written derivative of the GP marginal likelihood, in reverse and forward mode.

``gp_log_marginal`` has a JVP rule linear in the tangents,
``d log p = -alpha.dy + 1/2 alpha^T dC alpha - 1/2 <C^{-1}, dC>``, instead of differentiating
through the Cholesky factorisation; JAX transposes it for reverse mode, where the cotangent of
the covariance is ``1/2 (alpha alpha^T - C^{-1})``. Here it is checked, to 1e-8 relative,
against two independent references: JAX's automatic differentiation of a plain implementation
(Cholesky, solve, log-determinant), and fourth-order central finite differences of a
NumPy/SciPy implementation. Both are applied to the likelihood alone, to the likelihood
through each kernel, and to the full log densities of the book's three model patterns, under
``jit``, ``vmap``, ``grad``, ``jvp``, ``jacfwd`` and ``hessian``, with batched covariances,
and with the likelihood used twice in one trace.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.linalg
import scipy.optimize
from numpyro import handlers
from numpyro.infer.autoguide import AutoLaplaceApproximation
from numpyro.infer.util import potential_energy

from pyrox_lite import (
    JITTER,
    GPMarginal,
    PyroxModule,
    PyroxParam,
    gp,
    gp_log_marginal,
    kernels,
    pyrox_method,
)

jax.config.update("jax_enable_x64", True)

RTOL = 1e-8
THETA = np.array([1.3, 0.9, 0.12])  # lengthscale, amplitude, noise
NAMES = ("lengthscale", "amplitude", "noise")
# Sizes below, at and above the 64-row blocks of the blocked inverse, odd splits included;
# at 1100 the recursion stops after four halvings with blocks of 68 and 69 rows.
SIZES = (1, 5, 64, 65, 150, 1100)


def assert_rel(got, want, rtol: float = RTOL, what: str = "") -> None:
    """``max |got - want| <= rtol * max |want|``: relative error in the max norm."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err, scale = np.max(np.abs(got - want)), np.max(np.abs(want))
    assert err <= rtol * scale, f"{what}: relative error {err / scale:.2e} exceeds {rtol:.0e}"


def central_difference(
    f: Callable[[np.ndarray], float], x: np.ndarray, step: np.ndarray
) -> np.ndarray:
    """Gradient of ``f`` at ``x`` by the fourth-order five-point stencil, one coordinate at a time.

    The truncation error is ``O(step**4)``; with ``step`` about 1e-3 of the scale of ``x``
    it is far below the rounding error, about ``eps |f| / step``, which is itself ~1e-10
    relative for the densities here.
    """
    grad = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = step.flat[i]
        grad.flat[i] = (f(x - 2 * e) - 8 * f(x - e) + 8 * f(x + e) - f(x + 2 * e)) / (
            12 * step.flat[i]
        )
    return grad


# ---------------------------------------------------------------------------
# References.


def autodiff_logpdf(y, cov):
    """Plain log density; JAX differentiates through its Cholesky and solves."""
    chol = jnp.linalg.cholesky(cov)
    alpha = jax.scipy.linalg.cho_solve((chol, True), y)
    return (
        -0.5 * y @ alpha
        - jnp.sum(jnp.log(jnp.diagonal(chol)))
        - 0.5 * y.shape[-1] * jnp.log(2 * jnp.pi)
    )


def numpy_logpdf(y: np.ndarray, cov: np.ndarray) -> float:
    """The same density with SciPy's LAPACK Cholesky, for finite differences."""
    factor = scipy.linalg.cho_factor(cov, lower=True)
    alpha = scipy.linalg.cho_solve(factor, y)
    return float(
        -0.5 * y @ alpha - np.sum(np.log(np.diag(factor[0]))) - 0.5 * len(y) * np.log(2 * np.pi)
    )


def numpy_covariance(case, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """K + (noise**2 + jitter) I from the closed-form profile of the kernel, in NumPy."""
    ell, amp, noise = theta
    r = np.abs(x[:, None] - x[None, :]) / ell
    return amp**2 * np.vectorize(case.profile)(r) + (noise**2 + JITTER) * np.eye(len(x))


def log_prior(theta: np.ndarray) -> float:
    """log p(theta) of the book's hyperpriors: LogNormal(0, 1), LogNormal(0, 1), LogNormal(-2, 1)."""
    mu = np.array([0.0, 0.0, -2.0])
    log_theta = np.log(theta)
    return float(np.sum(-0.5 * (log_theta - mu) ** 2 - log_theta - 0.5 * np.log(2 * np.pi)))


def numpy_potential(case, x, y, z: np.ndarray) -> float:
    """NUTS's potential over unconstrained z = log(theta): -log p(theta, y) - log|d theta / d z|."""
    theta = np.exp(z)
    return -(numpy_logpdf(y, numpy_covariance(case, x, theta)) + log_prior(theta) + np.sum(z))


def mvn_model(case):
    """The book's model written the way NumPyro's own GP example writes it: dist.MultivariateNormal."""

    def model(x, y):
        ell = numpyro.sample("lengthscale", dist.LogNormal(0.0, 1.0))
        amp = numpyro.sample("amplitude", dist.LogNormal(0.0, 1.0))
        noise = numpyro.sample("noise", dist.LogNormal(-2.0, 1.0))
        cov = case.fn(x, x, ell, amp) + (noise**2 + JITTER) * jnp.eye(x.shape[0])
        numpyro.sample(
            "y", dist.MultivariateNormal(jnp.zeros(x.shape[0]), covariance_matrix=cov), obs=y
        )

    return model, {name: name for name in NAMES}


# ---------------------------------------------------------------------------
# The three patterns, each for any of the kernels.


def pattern1(case):
    """Plain Equinox kernel; the model samples theta and splices it in with eqx.tree_at."""
    base = case.module(1.0, 1.0)

    def model(x, y):
        ell = numpyro.sample("lengthscale", dist.LogNormal(0.0, 1.0))
        amp = numpyro.sample("amplitude", dist.LogNormal(0.0, 1.0))
        noise = numpyro.sample("noise", dist.LogNormal(-2.0, 1.0))
        kernel = eqx.tree_at(lambda k: (k.lengthscale, k.amplitude), base, (ell, amp))
        numpyro.sample("y", GPMarginal(kernel(x, x), noise), obs=y)

    return model, {name: name for name in NAMES}


class SampledKernel(PyroxModule):
    """A PyroxModule kernel that samples its own hyperparameters (pattern 2)."""

    fn: Callable = eqx.field(static=True)

    @pyrox_method
    def __call__(self, x1, x2):
        ell = self.pyrox_sample("lengthscale", dist.LogNormal(0.0, 1.0))
        amp = self.pyrox_sample("amplitude", dist.LogNormal(0.0, 1.0))
        return self.fn(x1, x2, ell, amp)


def pattern2(case):
    kernel = SampledKernel(case.fn, pyrox_name=case.name)

    def model(x, y):
        noise = numpyro.sample("noise", dist.LogNormal(-2.0, 1.0))
        numpyro.sample("y", GPMarginal(kernel(x, x), noise), obs=y)

    return model, {
        "lengthscale": f"{case.name}.lengthscale",
        "amplitude": f"{case.name}.amplitude",
        "noise": "noise",
    }


def pattern3(case):
    kernel = case.parameterized(
        lengthscale=PyroxParam(1.0, prior=dist.LogNormal(0.0, 1.0)),
        amplitude=PyroxParam(1.0, prior=dist.LogNormal(0.0, 1.0)),
    )
    model = gp.ExactGP(kernel, noise=PyroxParam(0.1, prior=dist.LogNormal(-2.0, 1.0)))
    return model, {
        "lengthscale": f"{case.name}.lengthscale",
        "amplitude": f"{case.name}.amplitude",
        "noise": "exactgp.noise",
    }


PATTERNS = {"pattern1": pattern1, "pattern2": pattern2, "pattern3": pattern3}


def potential(model, sites, x, y):
    """NUTS's potential as a function of the unconstrained vector z = log(theta), ordered as NAMES."""

    def fn(z):
        params = {sites[name]: z[..., i] for i, name in enumerate(NAMES)}
        return potential_energy(model, (x, y), {}, params)

    return fn


# ---------------------------------------------------------------------------
# Fixtures.


@pytest.fixture(scope="module")
def gp_problem(book_data_of) -> Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``gp_problem(n)``: the book's data with n points and an RBF covariance at THETA,
    conditioned as in a real GP fit."""

    def problem(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, y = book_data_of(n)
        ell, amp, noise = THETA
        gram = amp**2 * np.exp(-0.5 * ((x[:, None] - x[None, :]) / ell) ** 2)
        return x, y, gram + (noise**2 + JITTER) * np.eye(n)

    return problem


def random_symmetric(n: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(n, n))
    return a + a.T


# ---------------------------------------------------------------------------
# The likelihood alone: cotangents of y and of the covariance.


@pytest.mark.parametrize("n", SIZES)
def test_cotangents_match_autodiff(gp_problem, n):
    _, y, cov = gp_problem(n)
    got = jax.jit(jax.grad(gp_log_marginal, argnums=(0, 1)))(y, cov)
    want = jax.jit(jax.grad(autodiff_logpdf, argnums=(0, 1)))(y, cov)
    assert_rel(got[0], want[0], what="d/dy")
    assert_rel(got[1], want[1], what="d/dcov")
    assert_rel(got[1], np.asarray(got[1]).T, rtol=1e-13, what="symmetry")


@pytest.mark.parametrize("n", SIZES)
def test_cotangents_match_finite_differences(gp_problem, n):
    """Directional derivatives along a random y direction and a random symmetric cov direction."""
    _, y, cov = gp_problem(n)
    dy, dcov = np.random.default_rng(n).normal(size=n), random_symmetric(n, seed=n)
    g_y, g_cov = jax.jit(jax.grad(gp_log_marginal, argnums=(0, 1)))(y, cov)
    step = np.array([1e-3])
    along_y = central_difference(lambda t: numpy_logpdf(y + t[0] * dy, cov), np.zeros(1), step)
    along_cov = central_difference(
        lambda t: numpy_logpdf(y, cov + t[0] * dcov), np.zeros(1), 1e-3 * step
    )
    assert_rel(np.sum(g_y * dy), along_y[0], what="along y")
    assert_rel(np.sum(g_cov * dcov), along_cov[0], what="along cov")


def test_batched_covariances_through_vectorize(gp_problem):
    """gp_log_marginal vectorises over leading axes; y broadcasts against a stack of covariances."""
    _, y, cov = gp_problem(70)
    covs = np.stack([cov, cov + 0.5 * np.eye(70), 2.0 * cov])
    ys = np.stack([y, -y, 0.5 * y])
    total = lambda ys, covs: jnp.sum(gp_log_marginal(ys, covs))  # noqa: E731
    got = jax.jit(jax.grad(total, argnums=(0, 1)))(ys, covs)
    reference = jax.jit(jax.grad(autodiff_logpdf, argnums=(0, 1)))
    for b in range(3):
        want = reference(ys[b], covs[b])
        assert_rel(got[0][b], want[0], what=f"d/dy[{b}]")
        assert_rel(got[1][b], want[1], what=f"d/dcov[{b}]")
    got_y = jax.grad(total)(y, covs)
    want_y = sum(reference(y, covs[b])[0] for b in range(3))
    assert_rel(got_y, want_y, what="d/dy broadcast over the batch")


# ---------------------------------------------------------------------------
# Through each kernel, with respect to the hyperparameters.


def kernel_log_marginal(case, x, y):
    def fn(theta):
        ell, amp, noise = theta[..., 0], theta[..., 1], theta[..., 2]
        return gp_log_marginal(y, GPMarginal(case.fn(x, x, ell, amp), noise).covariance_matrix)

    return fn


def test_hyperparameter_gradient_matches_autodiff_and_finite_differences(kernel_case, book_data):
    x, y = book_data
    got = jax.jit(jax.grad(kernel_log_marginal(kernel_case, x, y)))(THETA)

    def plain(theta):
        cov = kernel_case.fn(x, x, theta[0], theta[1]) + (theta[2] ** 2 + JITTER) * jnp.eye(len(x))
        return autodiff_logpdf(y, cov)

    assert_rel(got, jax.jit(jax.grad(plain))(THETA), what="against autodiff")
    fd = central_difference(
        lambda t: numpy_logpdf(y, numpy_covariance(kernel_case, x, t)), THETA, 1e-3 * THETA
    )
    assert_rel(got, fd, what="against finite differences")


def test_hyperparameter_gradient_under_vmap(kernel_case, book_data):
    x, y = book_data
    thetas = np.exp(np.random.default_rng(1).normal([0.0, 0.0, -2.0], 0.5, size=(4, 3)))
    got = jax.jit(jax.vmap(jax.grad(kernel_log_marginal(kernel_case, x, y))))(thetas)
    for theta, g in zip(thetas, got):
        fd = central_difference(
            lambda t: numpy_logpdf(y, numpy_covariance(kernel_case, x, t)), theta, 1e-3 * theta
        )
        assert_rel(g, fd, what=f"theta={theta}")


# ---------------------------------------------------------------------------
# The three patterns' log densities, as NUTS sees them.


@pytest.mark.parametrize("pattern", PATTERNS.values(), ids=PATTERNS.keys())
def test_pattern_potential_gradient(pattern, kernel_case, book_data):
    x, y = book_data
    z = np.log(THETA)
    got = jax.jit(jax.grad(potential(*pattern(kernel_case), x, y)))(z)
    want = jax.jit(jax.grad(potential(*mvn_model(kernel_case), x, y)))(z)
    assert_rel(got, want, what="against dist.MultivariateNormal under autodiff")
    fd = central_difference(lambda z: numpy_potential(kernel_case, x, y, z), z, np.full(3, 1e-3))
    assert_rel(got, fd, what="against finite differences")


@pytest.mark.parametrize("pattern", PATTERNS.values(), ids=PATTERNS.keys())
def test_pattern_potential_gradient_under_vmap(pattern, rbf_case, book_data):
    x, y = book_data
    zs = np.random.default_rng(2).normal([0.0, 0.0, -2.0], 0.5, size=(5, 3))
    got = jax.jit(jax.vmap(jax.value_and_grad(potential(*pattern(rbf_case), x, y))))(zs)
    reference = jax.jit(jax.value_and_grad(potential(*mvn_model(rbf_case), x, y)))
    for z, value, grad in zip(zs, *got):
        want_value, want_grad = reference(z)
        np.testing.assert_allclose(value, want_value, rtol=1e-10)
        assert_rel(grad, want_grad, what=f"z={z}")


@pytest.mark.parametrize("pattern", PATTERNS.values(), ids=PATTERNS.keys())
def test_two_uses_in_one_trace(pattern, rbf_case, book_data):
    """Two log densities summed in one jitted gradient: each use keeps its own residuals."""
    x, y = book_data
    first, second = (
        potential(*pattern(rbf_case), x, y),
        potential(*pattern(rbf_case), x[::2], -y[::2]),
    )
    z, shift = np.log(THETA), np.array([0.2, -0.1, 0.3])
    got = jax.jit(jax.grad(lambda z: first(z) + second(z + shift)))(z)
    ref_first, ref_second = (
        potential(*mvn_model(rbf_case), x, y),
        potential(*mvn_model(rbf_case), x[::2], -y[::2]),
    )
    want = jax.jit(jax.grad(lambda z: ref_first(z) + ref_second(z + shift)))(z)
    assert_rel(got, want, what="against autodiff")
    fd = central_difference(
        lambda z: (
            numpy_potential(rbf_case, x, y, z)
            + numpy_potential(rbf_case, x[::2], -y[::2], z + shift)
        ),
        z,
        np.full(3, 1e-3),
    )
    assert_rel(got, fd, what="against finite differences")


# ---------------------------------------------------------------------------
# Forward mode, and second derivatives (forward over reverse, reverse over forward).

TANGENTS = {"y": (1.0, 0.0), "cov": (0.0, 1.0), "both": (1.0, 1.0)}


@pytest.mark.parametrize("which", TANGENTS.values(), ids=TANGENTS.keys())
@pytest.mark.parametrize("n", SIZES)
def test_jvp_matches_autodiff_and_finite_differences(gp_problem, n, which):
    _, y, cov = gp_problem(n)
    rng = np.random.default_rng(n + 1)
    dy, dcov = which[0] * rng.normal(size=n), which[1] * random_symmetric(n, seed=n + 2)
    value, tangent = jax.jit(lambda *a: jax.jvp(gp_log_marginal, a[:2], a[2:]))(y, cov, dy, dcov)
    want_value, want_tangent = jax.jit(lambda *a: jax.jvp(autodiff_logpdf, a[:2], a[2:]))(
        y, cov, dy, dcov
    )
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    assert_rel(tangent, want_tangent, what="against autodiff")
    fd = central_difference(
        lambda t: numpy_logpdf(y + t[0] * dy, cov + t[0] * dcov), np.zeros(1), np.array([1e-6])
    )
    assert_rel(tangent, fd[0], what="against finite differences")


def test_jvp_with_an_undifferentiated_input(gp_problem):
    """jvp with respect to one input only: the other arrives as a symbolic zero."""
    _, y, cov = gp_problem(70)
    dy, dcov = np.random.default_rng(0).normal(size=70), random_symmetric(70, seed=1)
    only_y = jax.jvp(lambda y: gp_log_marginal(y, cov), (y,), (dy,))[1]
    only_cov = jax.jvp(lambda c: gp_log_marginal(y, c), (cov,), (dcov,))[1]
    assert_rel(only_y, jax.jvp(lambda y: autodiff_logpdf(y, cov), (y,), (dy,))[1], what="y only")
    assert_rel(
        only_cov, jax.jvp(lambda c: autodiff_logpdf(y, c), (cov,), (dcov,))[1], what="cov only"
    )


@pytest.mark.parametrize("n", (1, 5, 64, 65))
def test_jacfwd_equals_the_reverse_mode_gradient(gp_problem, n):
    """Every entry of the forward-mode Jacobian, against autodiff of the plain implementation."""
    _, y, cov = gp_problem(n)
    got = jax.jit(jax.jacfwd(gp_log_marginal, argnums=(0, 1)))(y, cov)
    want = jax.jit(jax.grad(autodiff_logpdf, argnums=(0, 1)))(y, cov)
    assert_rel(got[0], want[0], what="d/dy")
    assert_rel(got[1], want[1], what="d/dcov")
    reverse = jax.jit(jax.grad(gp_log_marginal, argnums=(0, 1)))(y, cov)
    assert_rel(got[1], reverse[1], rtol=1e-12, what="forward against reverse")


def test_hessian_with_respect_to_y_and_cov(gp_problem):
    _, y, cov = gp_problem(5)
    got = jax.jit(jax.hessian(gp_log_marginal, argnums=(0, 1)))(y, cov)
    want = jax.jit(jax.hessian(autodiff_logpdf, argnums=(0, 1)))(y, cov)
    for i in range(2):
        for j in range(2):
            assert_rel(got[i][j], want[i][j], what=f"block ({i}, {j})")
    # d2/dy2 = -C^{-1}: a closed form.
    assert_rel(got[0][0], -np.linalg.inv(cov), what="d2/dy2 against -C^-1")


def test_hessian_vector_products_above_the_block_size(gp_problem):
    """At n = 65 (two blocks of the blocked inverse) the Hessian along a direction
    (forward over reverse mode), as a Laplace approximation or a Newton step uses it; the
    full (n, n, n, n) block of the covariance is too large to compare cheaply."""
    _, y, cov = gp_problem(65)
    rng = np.random.default_rng(65)
    tangents = (rng.normal(size=65), random_symmetric(65, seed=66))

    def hvp(fn):
        return jax.jit(lambda *p: jax.jvp(jax.grad(fn, argnums=(0, 1)), p, tangents)[1])(y, cov)

    got, want = hvp(gp_log_marginal), hvp(autodiff_logpdf)
    assert_rel(got[0], want[0], what="along y")
    assert_rel(got[1], want[1], what="along cov")
    d2y = jax.jit(jax.hessian(gp_log_marginal))(y, cov)
    assert_rel(d2y, -np.linalg.inv(cov), what="d2/dy2 against -C^-1")


FIRST_ORDER = {"jacfwd": jax.jacfwd, "jacrev": jax.jacrev}
SECOND_ORDER = {"hessian": jax.hessian, "jacrev(jacfwd)": lambda f: jax.jacrev(jax.jacfwd(f))}


@pytest.mark.parametrize("mode", FIRST_ORDER.values(), ids=FIRST_ORDER.keys())
def test_hyperparameter_derivatives_in_both_modes(mode, kernel_case, book_data):
    check_hyperparameter_derivative(mode, kernel_case, *book_data)


@pytest.mark.parametrize("mode", SECOND_ORDER.values(), ids=SECOND_ORDER.keys())
def test_hyperparameter_second_derivatives(mode, rbf_case, book_data):
    """RBF here, for the two orders of forward and reverse mode; every kernel's Hessian is
    checked against finite differences below."""
    check_hyperparameter_derivative(mode, rbf_case, *book_data)


def check_hyperparameter_derivative(mode, kernel_case, x, y):

    def plain(theta):
        cov = kernel_case.fn(x, x, theta[0], theta[1]) + (theta[2] ** 2 + JITTER) * jnp.eye(len(x))
        return autodiff_logpdf(y, cov)

    got = jax.jit(mode(kernel_log_marginal(kernel_case, x, y)))(THETA)
    assert_rel(got, jax.jit(mode(plain))(THETA), what="against autodiff")


def finite_difference_jacobian(grad, theta, rel_step=1e-3):
    """Column j: the five-point central difference of ``grad`` along coordinate j."""
    columns = []
    for j in range(len(theta)):
        h = rel_step * abs(theta[j])
        g = [np.asarray(grad(theta + k * h * np.eye(len(theta))[j])) for k in (-2, -1, 1, 2)]
        columns.append((g[0] - 8 * g[1] + 8 * g[2] - g[3]) / (12 * h))
    return np.stack(columns, axis=1)


def assert_hessian_matches_finite_differences(fn, theta):
    """The Hessian of ``fn`` at ``theta``, row by row, against central differences of the
    reverse-mode gradient (itself checked against finite differences above)."""
    hessian = jax.jit(jax.hessian(fn))(theta)
    assert np.all(np.isfinite(hessian)), hessian
    assert_rel(hessian, finite_difference_jacobian(jax.jit(jax.grad(fn)), theta), rtol=1e-6)
    assert_rel(hessian, hessian.T, rtol=1e-12, what="symmetry")


def test_hessian_against_finite_differences_of_the_gradient(kernel_case, book_data):
    """Every kernel, the Matern kernels included: the diagonal of their Gram matrix sits at
    r = 0, where sqrt has no derivative; the kernels' second derivatives there are 0."""
    x, y = book_data
    assert_hessian_matches_finite_differences(kernel_log_marginal(kernel_case, x, y), THETA)


COMPOSITES = {
    # name: (kernel of theta[:-1], theta with the noise last)
    "sum": (
        lambda t: kernels.Matern32(t[0], t[1]) + kernels.RBF(t[2], t[3]),
        [1.3, 0.9, 4.0, 0.5, 0.12],
    ),
    "product": (
        lambda t: kernels.Matern52(t[0], t[1]) * kernels.Periodic(t[2], t[3], None),
        [1.3, 0.9, 1.0, 3.0, 0.12],
    ),
}


@pytest.mark.parametrize("make, theta", COMPOSITES.values(), ids=COMPOSITES.keys())
def test_hessian_of_a_composite_with_a_matern_part(make, theta, book_data):
    x, y = book_data

    def fn(t):
        return gp_log_marginal(y, GPMarginal(make(t)(x, x), t[-1]).covariance_matrix)

    assert_hessian_matches_finite_differences(fn, np.array(theta))


def test_laplace_approximation_of_a_matern_model(book_data):
    """NumPyro's AutoLaplaceApproximation needs the Hessian of the potential: at the MAP of
    the book's model with a Matern 3/2 kernel, its standard deviations (of log theta) are
    those of the finite-difference Hessian of the potential."""
    x, y = book_data
    case = type("Case", (), {"name": "matern32", "parameterized": gp.Matern32})
    model, sites = pattern3(case)
    fn = potential(model, sites, x, y)
    value_and_grad = jax.jit(jax.value_and_grad(fn))
    fit = scipy.optimize.minimize(
        lambda z: tuple(map(np.asarray, value_and_grad(z))), np.zeros(3), jac=True
    )
    assert fit.success, fit.message
    guide = AutoLaplaceApproximation(model)
    handlers.seed(guide, rng_seed=0)(x, y)  # sets up the guide's latent layout: NAMES' order
    assert list(guide._init_locs) == [sites[name] for name in NAMES]
    tril = jax.jit(lambda loc: guide.get_transform({"auto_loc": loc}).scale_tril)(fit.x)
    sd = np.sqrt(np.diagonal(tril @ tril.T))
    fd_hessian = finite_difference_jacobian(jax.jit(jax.grad(fn)), fit.x)
    assert_rel(sd, np.sqrt(np.diagonal(np.linalg.inv(fd_hessian))), rtol=1e-6, what="Laplace sds")


@pytest.mark.parametrize("pattern", PATTERNS.values(), ids=PATTERNS.keys())
def test_pattern_potential_in_forward_mode(pattern, rbf_case, book_data):
    """NUTS's potential differentiated forward (jacfwd) and twice (hessian), under vmap."""
    x, y = book_data
    zs = np.random.default_rng(5).normal([0.0, 0.0, -2.0], 0.5, size=(3, 3))
    fn, reference = potential(*pattern(rbf_case), x, y), potential(*mvn_model(rbf_case), x, y)
    got_jac = jax.jit(jax.vmap(jax.jacfwd(fn)))(zs)
    got_hess = jax.jit(jax.vmap(jax.hessian(fn)))(zs)
    for z, jac, hess in zip(zs, got_jac, got_hess):
        assert_rel(jac, jax.jit(jax.grad(reference))(z), what=f"jacfwd at z={z}")
        assert_rel(hess, jax.jit(jax.hessian(reference))(z), what=f"hessian at z={z}")


def test_batched_covariances_in_forward_mode(gp_problem):
    _, y, cov = gp_problem(70)
    covs = np.stack([cov, cov + 0.5 * np.eye(70), 2.0 * cov])
    dcovs = np.stack([random_symmetric(70, seed=s) for s in range(3)])
    _, got = jax.jit(lambda c, d: jax.jvp(lambda c: gp_log_marginal(y, c), (c,), (d,)))(covs, dcovs)
    for b in range(3):
        want = jax.jvp(lambda c: autodiff_logpdf(y, c), (covs[b],), (dcovs[b],))[1]
        assert_rel(got[b], want, what=f"batch {b}")


# ---------------------------------------------------------------------------
# The program NUTS runs: one factorisation per gradient.


def count_primitive(jaxpr, name: str) -> int:
    """How often the primitive ``name`` appears in ``jaxpr``, sub-jaxprs included."""
    return sum(
        (eqn.primitive.name == name)
        + sum(count_primitive(sub, name) for sub in jax.extend.core.jaxprs_in_params(eqn.params))
        for eqn in jaxpr.eqns
    )


@pytest.mark.parametrize("pattern", PATTERNS.values(), ids=PATTERNS.keys())
def test_one_cholesky_in_the_reverse_program_at_n_1000(pattern, kernel_case, book_data_of):
    """The value and the gradient of the potential share one Cholesky factor, whatever the
    pattern and the kernel, and the checks add no factorisation (the program is only traced)."""
    x, y = book_data_of(1000)
    fn = jax.value_and_grad(potential(*pattern(kernel_case), x, y))
    assert count_primitive(jax.make_jaxpr(fn)(np.log(THETA)).jaxpr, "cholesky") == 1
