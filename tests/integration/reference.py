"""An independent reference for the book's model, computed with NumPy and SciPy only.

Nothing here imports JAX, NumPyro or ``pyrox_lite``: the model is written out again
from its definition (see ``index.md``):

* ``k(x, x') = amplitude**2 * exp(-|x - x'|**2 / (2 * lengthscale**2))``,
* ``y ~ N(0, K + (noise**2 + 1e-6) I)``,
* ``lengthscale, amplitude ~ LogNormal(0, 1)``, ``noise ~ LogNormal(-2, 1)``.

:func:`log_joint` evaluates ``log p(theta, y)`` with ``scipy.stats``.
:func:`quadrature` integrates the posterior deterministically on a grid over
``u = log theta``, giving posterior means and quantiles with no Monte Carlo error.
:func:`summarize` and :func:`disagreements` reduce a posterior to those numbers
with their Monte Carlo standard errors and compare two such summaries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import arviz as az
import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.special
import scipy.stats
from scipy.interpolate import CubicSpline

NAMES = ("lengthscale", "amplitude", "noise")
PRIOR_LOC = np.array([0.0, 0.0, -2.0])
"""Location of each hyperparameter's LogNormal prior (all have scale 1), in ``NAMES`` order."""
JITTER = 1e-6
PROBS = (0.05, 0.5, 0.95)
"""The posterior quantiles that are compared."""
Z = 5.0
"""How many combined standard errors two estimates may differ by; see :func:`disagreements`."""


def data() -> tuple[np.ndarray, np.ndarray]:
    """The book's data set, built exactly as every notebook builds it."""
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-10.0, 10.0, 100))
    y = np.sinc(x / np.pi) + 0.1 * rng.normal(size=100)
    return x, y


def check_points() -> np.ndarray:
    """The 24 hyperparameter values, shape ``(24, 3)`` in ``NAMES`` order, at which every
    pattern reports its log joint density."""
    rng = np.random.default_rng(1)
    return np.exp(rng.normal([0.0, 0.0, -2.0], 1.0, size=(24, 3)))


def _sqdist(x: np.ndarray) -> np.ndarray:
    return (x[:, None] - x[None, :]) ** 2


def log_joint(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """``log p(theta, y)`` in the constrained space, from ``scipy.stats`` densities."""
    lengthscale, amplitude, noise = theta
    cov = amplitude**2 * np.exp(-_sqdist(x) / (2.0 * lengthscale**2))
    cov += (noise**2 + JITTER) * np.eye(x.size)
    log_lik = scipy.stats.multivariate_normal(np.zeros(x.size), cov).logpdf(y)
    log_prior = scipy.stats.lognorm(s=1.0, scale=np.exp(PRIOR_LOC)).logpdf(theta).sum()
    return float(log_lik + log_prior)


# -- quadrature ------------------------------------------------------------------------


Axes = tuple[np.ndarray, np.ndarray, np.ndarray]


def _log_posterior_u(axes: Axes, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Unnormalised ``log p(u | y)`` on the grid ``axes`` of ``u = log theta``, shape ``(n0, n1, n2)``.

    With ``E = exp(-D / (2 lengthscale**2)) = Q diag(lam) Q^T``, the covariance is
    ``Q diag(amplitude**2 lam + noise**2 + jitter) Q^T``: one symmetric eigendecomposition
    per lengthscale gives the log determinant and the quadratic form for every
    (amplitude, noise) pair at O(N) cost each, instead of one Cholesky per grid point.
    The density of ``u`` is the density of ``theta`` times the Jacobian ``prod(theta)``.
    """
    u_ell, u_amp, u_noise = axes
    amp2 = np.exp(2.0 * u_amp)[:, None, None]
    nugget = (np.exp(2.0 * u_noise) + JITTER)[None, :, None]
    sqdist = _sqdist(x)
    out = np.empty((u_ell.size, u_amp.size, u_noise.size))
    for i, ell in enumerate(np.exp(u_ell)):
        lam, q = scipy.linalg.eigh(np.exp(-sqdist / (2.0 * ell**2)))
        r2 = (q.T @ y) ** 2
        var = amp2 * lam + nugget
        out[i] = -0.5 * np.sum(r2 / var + np.log(var), axis=-1)
    out -= 0.5 * x.size * np.log(2.0 * np.pi)
    grid = np.meshgrid(*axes, indexing="ij")
    for u, loc in zip(grid, PRIOR_LOC):
        out += scipy.stats.lognorm(s=1.0, scale=np.exp(loc)).logpdf(np.exp(u)) + u
    return out


def log_posterior_u(u: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Unnormalised ``log p(u | y)`` at one point ``u = log theta`` (the grid code on a 1x1x1 grid)."""
    return float(_log_posterior_u(tuple(np.atleast_1d(v) for v in u), x, y)[0, 0, 0])


EDGE = 1e-9
"""The density on every face of the integration box is below this fraction of its maximum."""


@dataclasses.dataclass(frozen=True)
class Box:
    """The integration box in ``u = log theta``: lower and upper corners, and the mode."""

    lower: np.ndarray
    upper: np.ndarray
    mode: np.ndarray


def _faces(lp: np.ndarray) -> np.ndarray:
    """Largest value on the lower and upper face of each axis, shape ``(3, 2)``."""
    return np.array(
        [[np.take(lp, 0, axis=i).max(), np.take(lp, -1, axis=i).max()] for i in range(3)]
    )


def find_box(x: np.ndarray, y: np.ndarray, width: float = 6.0, n: int = 24) -> Box:
    """Locate the posterior mode in ``u`` and grow a box around it until the posterior is
    negligible (below ``EDGE`` times its peak) on every face.

    A coarse scan over +-4 prior sds finds the basin, BFGS polishes the mode, and a
    finite-difference Hessian there gives the Laplace standard deviations. The box
    starts at ``width`` of them either side; any face where the density (on an
    ``n``-per-axis grid) is still above ``EDGE`` of the peak moves out by half a width,
    which handles the skewed directions the Laplace approximation misjudges.
    """
    coarse = tuple(loc + np.linspace(-4.0, 4.0, 33) for loc in PRIOR_LOC)
    lp = _log_posterior_u(coarse, x, y)
    start = np.array([a[i] for a, i in zip(coarse, np.unravel_index(np.argmax(lp), lp.shape))])
    result = scipy.optimize.minimize(lambda u: -log_posterior_u(u, x, y), start, method="BFGS")
    mode, h = result.x, 1e-3
    hess = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            ei, ej = np.eye(3)[i] * h, np.eye(3)[j] * h
            f = lambda d: -log_posterior_u(mode + d, x, y)  # noqa: E731
            hess[i, j] = (f(ei + ej) - f(ei - ej) - f(ej - ei) + f(-ei - ej)) / (4 * h * h)
    step = width * np.sqrt(np.diag(np.linalg.inv(hess)))
    lower, upper = mode - step, mode + step
    for _ in range(20):
        axes = tuple(np.linspace(lo, hi, n) for lo, hi in zip(lower, upper))
        lp = _log_posterior_u(axes, x, y)
        grow = _faces(lp) > lp.max() + np.log(EDGE)
        if not grow.any():
            return Box(lower=lower, upper=upper, mode=mode)
        lower = lower - 0.5 * step * grow[:, 0]
        upper = upper + 0.5 * step * grow[:, 1]
    raise RuntimeError(f"The posterior did not fit in a box of {lower} to {upper} in log space.")


@dataclasses.dataclass(frozen=True)
class Quadrature:
    """Posterior marginals on a grid and what the tests read from them."""

    axes: Axes
    log_density: np.ndarray
    """Normalised ``log p(u | y)`` on the grid (so that ``sum(exp) * cell volume == 1``)."""

    def edge_ratio(self) -> float:
        """Largest density on the box's faces relative to the largest density inside it."""
        return float(np.exp(_faces(self.log_density).max() - self.log_density.max()))

    def log_marginal(self, i: int) -> np.ndarray:
        other = tuple(j for j in range(3) if j != i)
        return scipy.special.logsumexp(self.log_density, axis=other)

    def mean(self, name: str) -> float:
        i = NAMES.index(name)
        w = np.exp(self.log_marginal(i))
        return float(np.sum(np.exp(self.axes[i]) * w) / np.sum(w))

    def sd(self, name: str) -> float:
        i = NAMES.index(name)
        w = np.exp(self.log_marginal(i))
        theta = np.exp(self.axes[i])
        mean = np.sum(theta * w) / np.sum(w)
        return float(np.sqrt(np.sum((theta - mean) ** 2 * w) / np.sum(w)))

    def quantiles(self, name: str, probs: tuple[float, ...] = PROBS) -> np.ndarray:
        """Marginal quantiles of ``name``: the grid's log marginal is interpolated by a cubic
        spline, integrated by the trapezoidal rule on 20001 points, and the CDF inverted
        by linear interpolation (then mapped to ``theta``)."""
        i = NAMES.index(name)
        u = self.axes[i]
        fine = np.linspace(u[0], u[-1], 20001)
        density = np.exp(CubicSpline(u, self.log_marginal(i))(fine))
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(fine))])
        return np.exp(np.interp(probs, cdf / cdf[-1], fine))


def quadrature(x: np.ndarray, y: np.ndarray, box: Box, n: int) -> Quadrature:
    """Evaluate and normalise the posterior of ``u`` on an ``n``-per-axis grid spanning ``box``."""
    axes = tuple(np.linspace(lo, hi, n) for lo, hi in zip(box.lower, box.upper))
    lp = _log_posterior_u(axes, x, y)
    cell = np.prod([a[1] - a[0] for a in axes])
    return Quadrature(axes=axes, log_density=lp - scipy.special.logsumexp(lp) - np.log(cell))


# -- summaries and the checker ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Summary:
    """Posterior mean and ``PROBS`` quantiles of one hyperparameter, each with its standard error."""

    mean: float
    mean_se: float
    quantiles: np.ndarray
    quantile_se: np.ndarray

    def values(self) -> dict[str, tuple[float, float]]:
        out = {"mean": (self.mean, self.mean_se)}
        for p, q, se in zip(PROBS, self.quantiles, self.quantile_se):
            out[f"q{round(100 * p):02d}"] = (float(q), float(se))
        return out


def summarize(posterior: az.InferenceData) -> dict[str, Summary]:
    """Means and quantiles of each hyperparameter with ArviZ's Monte Carlo standard errors
    (``mcse(method="mean")`` and ``mcse(method="quantile", prob=q)``)."""
    mean_se = az.mcse(posterior, var_names=list(NAMES), method="mean")
    q_se = [az.mcse(posterior, var_names=list(NAMES), method="quantile", prob=p) for p in PROBS]
    out = {}
    for name in NAMES:
        draws = posterior.posterior[name].values.ravel()
        out[name] = Summary(
            mean=float(draws.mean()),
            mean_se=float(mean_se[name]),
            quantiles=np.quantile(draws, PROBS),
            quantile_se=np.array([float(s[name]) for s in q_se]),
        )
    return out


def summarize_quadrature(q: Quadrature) -> dict[str, Summary]:
    """The quadrature's means and quantiles, with standard error 0 (its error is checked separately)."""
    return {
        name: Summary(q.mean(name), 0.0, q.quantiles(name), np.zeros(len(PROBS))) for name in NAMES
    }


def standardized_differences(
    a: Mapping[str, Summary], b: Mapping[str, Summary]
) -> dict[tuple[str, str], float]:
    """``|a - b| / sqrt(se_a**2 + se_b**2)`` for every hyperparameter and statistic."""
    out = {}
    for name in NAMES:
        for stat, (va, sa) in a[name].values().items():
            vb, sb = b[name].values()[stat]
            out[name, stat] = abs(va - vb) / np.hypot(sa, sb)
    return out


def disagreements(a: Mapping[str, Summary], b: Mapping[str, Summary], z: float = Z) -> list[str]:
    """The statistics on which two posterior summaries disagree; empty if they agree.

    Each statistic is a Monte Carlo estimate whose error is approximately normal with
    standard deviation its MCSE (for a mean by the Markov chain CLT; for a quantile
    ``q_p`` because it is the inverse of the estimated CDF at ``p``, whose error ArviZ
    maps through the empirical distribution using the effective sample size of the
    indicator ``theta <= q_p``). Two independent runs therefore differ by
    ``N(0, se_a**2 + se_b**2)``, and a quadrature value enters with se 0. The
    tolerance is ``z`` combined standard errors: with ``z = 5`` a correct pair
    fails one comparison with probability 5.7e-7, so the 72 comparisons made by the
    agreement tests (3 pairs and 3 references, 3 hyperparameters, 4 statistics) raise
    a false alarm with probability below 5e-5, while leaving room for the MCSE
    estimates themselves being off by tens of percent.
    """
    out = []
    for (name, stat), d in standardized_differences(a, b).items():
        if not d <= z:
            va, sa = a[name].values()[stat]
            vb, sb = b[name].values()[stat]
            out.append(
                f"{name} {stat}: {va:.5g} (se {sa:.2g}) vs {vb:.5g} (se {sb:.2g}) differ by {d:.1f} > {z} se"
            )
    return out
