r"""Sparse GPs: inducing points, the collapsed bound and the stochastic variational GP.

An exact GP costs :math:`O(N^3)` time and :math:`O(N^2)` memory. A sparse GP summarises the
latent function by its values :math:`\mathbf u = f(Z)` at :math:`M \ll N` *inducing inputs*
:math:`Z` and replaces the exact log marginal likelihood by a lower bound that costs
:math:`O(NM^2)`, or :math:`O(BM^2 + M^3)` per step when the data term is estimated on a
minibatch of :math:`B` points.

The math lives in pure functions, used by the modules at the bottom of this file as the
kernels' math is used by :mod:`pyrox_lite.kernels` and :mod:`pyrox_lite.gp`:

* :func:`collapsed` (Titsias, 2009): for Gaussian noise the best :math:`q(\mathbf u)` is known
  in closed form and the bound depends on θ and Z only;
* :func:`svgp_elbo`, :func:`whitened_kl` (Hensman, Fusi and Lawrence, 2013): the uncollapsed
  bound with an explicit :math:`q(\mathbf u)`, a sum over data points that a minibatch
  estimates without bias;
* :func:`sparse_predict`: predictions from any whitened :math:`q(\mathbf u)`;
* :func:`svgp_observe` and :func:`svgp_guide`: the same bound as NumPyro sites, so that
  NumPyro's ``SVI`` with ``TraceMeanField_ELBO`` optimises it, minibatched through
  ``numpyro.plate(..., subsample_size=B)``, which scales the data term by :math:`N/B`.

**Whitening.** With :math:`K_{ZZ} = L L^\top`, the inducing values are written
:math:`\mathbf u = L\mathbf v` with :math:`\mathbf v \sim \mathcal N(0, I)` a priori, and the
variational distribution is :math:`q(\mathbf v) = \mathcal N(\mathbf m, S S^\top)`, ``S``
lower-triangular. Write :math:`A = L^{-1} K_{ZX}` (column :math:`\mathbf a_i` per data point)
and :math:`d_i = \tilde k(x_i, x_i) - \lVert \mathbf a_i \rVert^2`, the prior variance of
:math:`f_i` that the inducing values do not explain.

**Jitter.** The latent function's kernel is :math:`\tilde k = k + \delta\,[x = x']`: the jitter
:math:`\delta` (``JITTER``, :math:`10^{-6}`) is a white-noise part of the latent process.
:math:`K_{ZZ}` gets :math:`\delta I` on its diagonal, each :math:`d_i` gets :math:`\delta`, and
an inducing input that coincides with a data input shares that white noise with it. The
observations add noise of variance :math:`\sigma^2`. This is exactly the model of
:class:`~pyrox_lite.GPMarginal`, :math:`\mathbf y \sim \mathcal N(0, K + (\sigma^2 + \delta)I)`,
for inputs without duplicates; with :math:`Z = X` the collapsed bound equals
:func:`~pyrox_lite.gp_log_marginal` to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import Array
from jax.typing import ArrayLike
from numpyro.distributions import constraints
from numpyro.distributions.kl import kl_divergence

from ._checks import (
    as_float,
    check_data,
    check_factorised,
    check_finite,
    check_positive,
    check_same_features,
    concrete,
)
from .gp import AbstractKernel
from .likelihood import JITTER, GPPrediction
from .params import Parameterized, PyroxParam, one_call, param_field, pyrox_method

__all__ = [
    "Collapsed",
    "collapsed",
    "svgp_elbo",
    "whitened_kl",
    "sparse_predict",
    "svgp_observe",
    "svgp_guide",
    "WhitenedPrior",
    "SparseGP",
    "SVGP",
]

Kernel = Callable[[Array, Array], Array]
_LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------
# Checks


def _features(x: Array) -> int:
    return 1 if x.ndim == 1 else x.shape[1]


def check_inducing(z: ArrayLike, x: Array, *, num_data: int | None = None) -> Array:
    """``z`` as a float array with the features of ``x``; with ``num_data``, also M <= N."""
    z = as_float(z)
    if z.ndim not in (1, 2) or z.shape[0] == 0:
        raise ValueError(
            f"inducing inputs `z` must have shape (M,) or (M, D), M >= 1; got {z.shape}."
        )
    if _features(z) != _features(x):
        raise ValueError(
            f"inducing inputs `z` must have the same number of features as `x`; got "
            f"{_features(z)} and {_features(x)} (shapes {z.shape} and {x.shape})."
        )
    check_finite(z, "z")
    if num_data is not None and z.shape[0] > num_data:
        raise ValueError(
            f"{z.shape[0]} inducing inputs for {num_data} data points: a sparse GP needs "
            f"M <= N (with M = N use the exact GP, `gp_log_marginal`)."
        )
    return z


def check_batch(batch_size: int | None, num_data: int) -> None:
    """Raise unless ``1 <= batch_size <= num_data``."""
    if batch_size is None:
        return
    if not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= num_data:
        raise ValueError(
            f"`batch_size` must be an integer between 1 and the number of data points "
            f"{num_data}; got {batch_size!r}."
        )


def _q_shapes(q_mean: Array, q_sqrt: Array, m: int) -> None:
    if q_mean.shape != (m,) or q_sqrt.shape != (m, m):
        raise ValueError(
            f"q(u) must have a mean of shape ({m},) and a lower-triangular factor of shape "
            f"({m}, {m}), one row per inducing input; got {q_mean.shape} and {q_sqrt.shape}."
        )


# ---------------------------------------------------------------------------
# The math


def _as_2d(x: Array) -> Array:
    return x[:, None] if x.ndim == 1 else x


def _cross(kernel: Kernel, z: Array, x: Array, jitter: float) -> Array:
    r""":math:`\tilde K_{ZX}`: the kernel plus the white noise an inducing input shares with a
    data input at the same place."""
    same = jnp.all(_as_2d(z)[:, None, :] == _as_2d(x)[None, :, :], axis=-1)
    return kernel(z, x) + jitter * same


def _diag(kernel: Kernel, x: Array, jitter: float) -> Array:
    r""":math:`\tilde k(x_i, x_i) = k(x_i, x_i) + \delta`, one kernel evaluation per point."""
    return jax.vmap(lambda t: kernel(t[None], t[None])[0, 0])(x) + jitter


def _chol_zz(kernel: Kernel, z: Array, jitter: float) -> Array:
    r""":math:`L`, the lower Cholesky factor of :math:`K_{ZZ} + \delta I`."""
    k_zz = kernel(z, z)
    k_zz = k_zz + jitter * jnp.eye(z.shape[0], dtype=k_zz.dtype)
    chol = jnp.linalg.cholesky(k_zz)
    check_factorised(chol, k_zz, "sparse GP: K_ZZ")
    return chol


def _project(kernel: Kernel, chol: Array, z: Array, x: Array, jitter: float) -> tuple[Array, Array]:
    r"""``(A, d)``: :math:`A = L^{-1}\tilde K_{ZX}`, :math:`d_i = \tilde k(x_i, x_i) - \lVert \mathbf a_i\rVert^2`."""
    a = jsl.solve_triangular(chol, _cross(kernel, z, x, jitter), lower=True)
    return a, _diag(kernel, x, jitter) - jnp.sum(a**2, axis=0)


def _projection(kernel: Kernel, x: Array, z: Array, jitter: float) -> tuple[Array, Array, Array]:
    """``(L, A, d)`` of :func:`_chol_zz` and :func:`_project`."""
    with one_call():  # a kernel that registers NumPyro sites does so once
        chol = _chol_zz(kernel, z, jitter)
        return (chol, *_project(kernel, chol, z, x, jitter))


class Collapsed(NamedTuple):
    r"""The collapsed bound and the whitened :math:`q(\mathbf v) = \mathcal N(\mathbf m, SS^\top)`
    that attains it."""

    bound: Array
    q_mean: Array
    q_sqrt: Array


def collapsed(
    kernel: Kernel,
    x: ArrayLike,
    y: ArrayLike,
    z: ArrayLike,
    noise: ArrayLike,
    jitter: float = JITTER,
) -> Collapsed:
    r"""The collapsed lower bound of Titsias (2009) on :math:`\log p(\mathbf y)`, and the optimal
    whitened :math:`q(\mathbf v)` for Gaussian noise, from one projection.

    With :math:`Q = A^\top A = \tilde K_{XZ} K_{ZZ}^{-1} \tilde K_{ZX}` (see the module's notes on
    :math:`A` and the jitter),

    .. math:: \mathcal L = \log \mathcal N(\mathbf y \mid 0, Q + \sigma^2 I)
        - \frac{1}{2\sigma^2} \operatorname{tr}(\tilde K_{XX} - Q)
        \le \log \mathcal N(\mathbf y \mid 0, \tilde K_{XX} + \sigma^2 I).

    The first term is evaluated through the :math:`M \times M` matrix
    :math:`B = I + \sigma^{-2} A A^\top = L_B L_B^\top`, with
    :math:`\mathbf c = L_B^{-1} A\mathbf y`:

    .. math:: \log \mathcal N(\mathbf y \mid 0, Q + \sigma^2 I) = -\tfrac N2 \log 2\pi
        - N\log\sigma - \textstyle\sum_j \log (L_B)_{jj}
        - \frac{1}{2\sigma^2}\left(\mathbf y^\top\mathbf y
        - \sigma^{-2}\mathbf c^\top\mathbf c\right).

    The trace term is :math:`\sum_i d_i`. Setting the derivatives of :func:`svgp_elbo` (all data,
    no minibatch) with respect to :math:`\mathbf m` and :math:`SS^\top` to zero gives

    .. math:: SS^\top = B^{-1}, \qquad \mathbf m = \sigma^{-2} B^{-1} A\mathbf y,

    at which :func:`svgp_elbo` equals :math:`\mathcal L`; ``q_sqrt`` is the lower Cholesky
    factor of :math:`B^{-1}`. Cost :math:`O(NM^2)`, memory :math:`O(NM)`.

    Args:
        kernel: ``kernel(x1, x2) -> Gram matrix``.
        x, y: data, shapes ``(N,)`` or ``(N, D)``, and ``(N,)``.
        z: inducing inputs, shape ``(M,)`` or ``(M, D)``, M <= N.
        noise: the noise standard deviation :math:`\sigma`.
        jitter: :math:`\delta`, the latent process's white-noise variance.
    """
    x, y = check_data(x, y)
    z = check_inducing(z, x, num_data=x.shape[0])
    noise = as_float(noise)
    check_positive(noise, "noise")
    _, a, d = _projection(kernel, x, z, jitter)
    s2 = noise**2
    n, eye = x.shape[0], jnp.eye(z.shape[0], dtype=a.dtype)
    chol_b = jnp.linalg.cholesky(eye + (a @ a.T) / s2)
    c = jsl.solve_triangular(chol_b, a @ y, lower=True)
    log_marginal = (
        -0.5 * n * _LOG_2PI
        - n * jnp.log(noise)
        - jnp.sum(jnp.log(jnp.diagonal(chol_b)))
        - 0.5 * (y @ y - (c @ c) / s2) / s2
    )
    b_inv = jsl.cho_solve((chol_b, True), eye)
    q_sqrt = jnp.linalg.cholesky(0.5 * (b_inv + b_inv.T))
    return Collapsed(log_marginal - 0.5 * jnp.sum(d) / s2, b_inv @ (a @ y) / s2, q_sqrt)


def whitened_kl(q_mean: ArrayLike, q_sqrt: ArrayLike) -> Array:
    r""":math:`\mathrm{KL}\left(\mathcal N(\mathbf m, SS^\top) \,\|\, \mathcal N(0, I)\right)
    = \tfrac12\left(\lVert S\rVert_F^2 + \mathbf m^\top\mathbf m - M\right) - \sum_j \log |S_{jj}|`."""
    q_mean, q_sqrt = as_float(q_mean), as_float(q_sqrt)
    m = q_mean.shape[0]
    return 0.5 * (jnp.sum(q_sqrt**2) + q_mean @ q_mean - m) - jnp.sum(
        jnp.log(jnp.abs(jnp.diagonal(q_sqrt)))
    )


class WhitenedPrior(dist.MultivariateNormal):
    r""":math:`\mathcal N(0, I_M)`, the prior of the whitened inducing values, as a NumPyro
    distribution. Its KL divergence from a Gaussian guide is :func:`whitened_kl`, registered
    with NumPyro's ``kl_divergence``: :math:`O(M^2)` where the general Gaussian pair solves a
    triangular system of M right-hand sides, :math:`O(M^3)`."""

    def __init__(self, num_inducing: int) -> None:
        super().__init__(jnp.zeros(num_inducing), scale_tril=jnp.eye(num_inducing))


@kl_divergence.register(dist.MultivariateNormal, WhitenedPrior)
def _kl_from_whitened_prior(q: dist.MultivariateNormal, p: WhitenedPrior) -> Array:
    return whitened_kl(q.loc, q.scale_tril)


def _moments(a: Array, d: Array, q_mean: Array, q_sqrt: Array) -> tuple[Array, Array]:
    r"""Mean :math:`\mathbf a_i^\top \mathbf m` and variance
    :math:`d_i + \lVert S^\top \mathbf a_i\rVert^2` of :math:`q(f_i)`."""
    return a.T @ q_mean, d + jnp.sum((q_sqrt.T @ a) ** 2, axis=0)


def _expected_terms(
    kernel: Kernel, x: Array, z: Array, q_mean: Array, q_sqrt: Array, jitter: float
) -> tuple[Array, Array]:
    _, a, d = _projection(kernel, x, z, jitter)
    return _moments(a, d, q_mean, q_sqrt)


def svgp_elbo(
    kernel: Kernel,
    x: ArrayLike,
    y: ArrayLike,
    z: ArrayLike,
    q_mean: ArrayLike,
    q_sqrt: ArrayLike,
    noise: ArrayLike,
    jitter: float = JITTER,
    *,
    num_data: int | None = None,
) -> Array:
    r"""The uncollapsed SVGP bound of Hensman, Fusi and Lawrence (2013), whitened.

    With :math:`q(f_i) = \mathcal N(\mu_i, s_i)`, :math:`\mu_i = \mathbf a_i^\top\mathbf m` and
    :math:`s_i = d_i + \lVert S^\top\mathbf a_i\rVert^2`,

    .. math:: \mathcal L = \sum_{i=1}^N \Big(\log\mathcal N(y_i \mid \mu_i, \sigma^2)
        - \frac{s_i}{2\sigma^2}\Big) - \mathrm{KL}\left(q(\mathbf v) \,\|\, \mathcal N(0, I)\right).

    The sum runs over data points, so a minibatch of :math:`B` of them, scaled by :math:`N/B`,
    estimates it without bias: pass the minibatch as ``x, y`` and the full count as
    ``num_data``. Cost :math:`O(BM^2 + M^3)`.
    """
    x, y = check_data(x, y)
    n = x.shape[0] if num_data is None else num_data
    if n < x.shape[0]:
        raise ValueError(f"`num_data` ({n}) is smaller than the minibatch ({x.shape[0]} points).")
    z = check_inducing(z, x)
    q_mean, q_sqrt = as_float(q_mean), as_float(q_sqrt)
    _q_shapes(q_mean, q_sqrt, z.shape[0])
    noise = as_float(noise)
    check_positive(noise, "noise")
    mu, var = _expected_terms(kernel, x, z, q_mean, q_sqrt, jitter)
    per_point = dist.Normal(mu, noise).log_prob(y) - 0.5 * var / noise**2
    return (n / x.shape[0]) * jnp.sum(per_point) - whitened_kl(q_mean, q_sqrt)


def sparse_predict(
    kernel: Kernel,
    z: ArrayLike,
    q_mean: ArrayLike,
    q_sqrt: ArrayLike,
    x_test: ArrayLike,
    noise: ArrayLike,
    jitter: float = JITTER,
) -> GPPrediction:
    r"""Predictive moments at ``x_test`` under a whitened :math:`q(\mathbf v) = \mathcal N(\mathbf m, SS^\top)`.

    With :math:`\mathbf a_* = L^{-1}\tilde K_{Z*}`: mean :math:`\mathbf a_*^\top\mathbf m`,
    :math:`\operatorname{var} f_* = \tilde k_{**} - \lVert\mathbf a_*\rVert^2 + \lVert S^\top\mathbf a_*\rVert^2`,
    :math:`\operatorname{var} y_* = \operatorname{var} f_* + \sigma^2`. With the ``q`` of
    :func:`collapsed` these are the predictions of the collapsed bound; with :math:`Z = X` they
    are the exact GP's (its latent variance plus :math:`\delta`).
    """
    z, _ = check_data(z, x_name="z")
    x_test, _ = check_data(x_test, x_name="x_test")
    check_same_features(z, x_test)
    q_mean, q_sqrt = as_float(q_mean), as_float(q_sqrt)
    _q_shapes(q_mean, q_sqrt, z.shape[0])
    noise = as_float(noise)
    check_positive(noise, "noise")
    mean, var_f = _expected_terms(kernel, x_test, z, q_mean, q_sqrt, jitter)
    return GPPrediction(mean, var_f, var_f + noise**2)


# ---------------------------------------------------------------------------
# The bound as NumPyro sites


def svgp_guide(num_inducing: int, site: str = "svgp.u") -> dict[str, Array]:
    r"""The variational distribution :math:`q(\mathbf v) = \mathcal N(\mathbf m, SS^\top)` as a
    NumPyro guide: parameters ``"{site}_loc"`` (zeros) and ``"{site}_scale_tril"`` (the identity,
    lower-Cholesky constrained), and the sample site ``site``. Returns ``{site: draw}``, as
    the parts of ``numpyro.infer.autoguide.AutoGuideList`` do."""
    m = numpyro.param(f"{site}_loc", jnp.zeros(num_inducing))
    s = numpyro.param(
        f"{site}_scale_tril", jnp.eye(num_inducing), constraint=constraints.lower_cholesky
    )
    return {site: numpyro.sample(site, dist.MultivariateNormal(m, scale_tril=s))}


def svgp_observe(
    kernel: Kernel,
    x: ArrayLike,
    y: ArrayLike | None,
    z: Array,
    noise: ArrayLike,
    *,
    site: str = "svgp.u",
    obs_site: str = "y",
    batch_size: int | None = None,
    num_data: int | None = None,
    jitter: float = JITTER,
) -> None:
    r"""Register :func:`svgp_elbo` as NumPyro sites, for ``SVI`` with ``TraceMeanField_ELBO``.

    * ``site``: :math:`\mathbf v \sim \mathcal N(0, I)` (:class:`WhitenedPrior`), whose guide
      is :func:`svgp_guide`; ``TraceMeanField_ELBO`` subtracts the KL term in closed form,
      :func:`whitened_kl`;
    * in ``numpyro.plate("data", N, subsample_size=B)``: ``obs_site``, an observation
      :math:`y_i \sim \mathcal N(\mu_i, \sigma^2)`, and ``obs_site + "_var"``, a factor
      :math:`-s_i / 2\sigma^2`, both scaled by :math:`N/B` by the plate.

    :math:`\mu_i, s_i` depend on :math:`q(\mathbf v)`, not on a draw of :math:`\mathbf v`: the
    data term is the expectation in closed form, read from the guide's parameters (as in
    Pyro's sparse GPs), so the ELBO has no Monte Carlo noise from :math:`\mathbf v`.

    Minibatches: ``batch_size=B`` draws B of the N points of ``x, y`` at each step, with
    replacement, from the key of NumPyro's ``seed`` handler (``SVI`` provides it), and hands
    them to the plate; or pass a minibatch you drew (for example sharded across devices) as
    ``x, y`` with the full count ``num_data``.
    """
    if y is None:
        raise ValueError(
            "svgp_observe needs the targets `y`: a sparse GP here is fitted, not sampled."
        )
    x, y = check_data(x, y)
    n_here = x.shape[0]
    if num_data is not None and batch_size is not None:
        raise ValueError(
            "give either `batch_size` (draw minibatches) or `num_data` (a given one), not both."
        )
    check_batch(batch_size, n_here)
    n = n_here if num_data is None else int(num_data)
    if n < n_here:
        raise ValueError(f"`num_data` ({n}) is smaller than the minibatch ({n_here} points).")
    z = check_inducing(z, x, num_data=n)
    m = z.shape[0]
    with one_call():
        # the kernel's sites (if any) are registered here, outside the data plate
        chol = _chol_zz(kernel, z, jitter)
        numpyro.sample(site, WhitenedPrior(m))
        q_mean = numpyro.param(f"{site}_loc", jnp.zeros(m))
        q_sqrt = numpyro.param(
            f"{site}_scale_tril", jnp.eye(m), constraint=constraints.lower_cholesky
        )

        def data_sites(x: Array, y: Array) -> None:
            mu, var = _moments(*_project(kernel, chol, z, x, jitter), q_mean, q_sqrt)
            numpyro.sample(obs_site, dist.Normal(mu, noise), obs=y)
            numpyro.factor(f"{obs_site}_var", -0.5 * var / noise**2)

        if num_data is None:
            # The plate scales the sites inside it by N / B. Its own draw of B of the N points
            # is a scan of B steps on CPU; B indices drawn at once, with replacement, cost far
            # less and keep the estimate unbiased.
            key = numpyro.prng_key() if batch_size is not None else None
            draw = {} if key is None else {"data": jax.random.randint(key, (batch_size,), 0, n)}
            with (
                numpyro.handlers.substitute(data=draw),
                numpyro.plate("data", n, subsample_size=batch_size or n) as idx,
            ):
                data_sites(*((x[idx], y[idx]) if batch_size is not None else (x, y)))
        else:
            # a minibatch drawn by the caller: the same N / B, through NumPyro's scale handler
            with numpyro.handlers.scale(scale=n / n_here), numpyro.plate("data", n_here):
                data_sites(x, y)


# ---------------------------------------------------------------------------
# Modules


class SparseGP(eqx.Module):
    """A sparse GP as a plain Equinox module (pattern 1): array leaves that a model splices
    with ``eqx.tree_at``, and methods that call the pure functions above.

    Attributes:
        kernel: a kernel of :mod:`pyrox_lite.kernels` (``kernel(x1, x2) -> Gram``).
        inducing: the inducing inputs Z, shape ``(M,)`` or ``(M, D)``.
        noise: the noise standard deviation.
        jitter: the latent process's white-noise variance (see the module's notes).
    """

    kernel: Kernel
    inducing: Array = eqx.field(converter=as_float)
    noise: Array = eqx.field(converter=as_float)
    jitter: float = eqx.field(default=JITTER, static=True)

    def collapsed(self, x: ArrayLike, y: ArrayLike) -> Collapsed:
        """:func:`collapsed` at this module's values."""
        return collapsed(self.kernel, x, y, self.inducing, self.noise, self.jitter)

    def elbo(self, x, y, q_mean, q_sqrt, *, num_data: int | None = None) -> Array:
        """:func:`svgp_elbo` at this module's values."""
        return svgp_elbo(
            self.kernel,
            x,
            y,
            self.inducing,
            q_mean,
            q_sqrt,
            self.noise,
            self.jitter,
            num_data=num_data,
        )

    def observe(self, x, y, *, site: str = "svgp.u", batch_size=None, num_data=None) -> None:
        """:func:`svgp_observe` at this module's values."""
        svgp_observe(
            self.kernel,
            x,
            y,
            self.inducing,
            self.noise,
            site=site,
            batch_size=batch_size,
            num_data=num_data,
            jitter=self.jitter,
        )

    def predict(self, x_test: ArrayLike, q_mean: ArrayLike, q_sqrt: ArrayLike) -> GPPrediction:
        """:func:`sparse_predict` at this module's values."""
        return sparse_predict(
            self.kernel, self.inducing, q_mean, q_sqrt, x_test, self.noise, self.jitter
        )


class SVGP(Parameterized):
    """A sparse variational GP whose parameters resolve themselves (pattern 3).

    Three kinds of leaves: the kernel's fields and ``noise`` (``PyroxParam``; with a prior,
    sample sites), the inducing inputs ``inducing`` (a ``PyroxParam`` without a prior: a
    ``numpyro.param`` site, learned), and :math:`q(\\mathbf u)`, the guide's parameters
    ``"{scope}.u_loc"`` and ``"{scope}.u_scale_tril"`` (see :meth:`guide`).

    Attributes:
        kernel: a ``Parameterized`` kernel of :mod:`pyrox_lite.gp`.
        inducing: the inducing inputs Z, a ``PyroxParam`` of shape ``(M,)`` or ``(M, D)``.
        noise: the noise standard deviation.
        jitter: the latent process's white-noise variance (see the module's notes).
    """

    kernel: AbstractKernel
    inducing: PyroxParam = param_field(0.0, domain=constraints.real)
    noise: PyroxParam = param_field(0.1, domain=constraints.positive)
    jitter: float = eqx.field(default=JITTER, static=True)

    def __check_init__(self) -> None:
        z = concrete(self.inducing.init)
        if z is not None and (z.ndim not in (1, 2) or z.shape[0] == 0):
            raise ValueError(
                f"SVGP: `inducing` must have shape (M,) or (M, D), M >= 1; got {z.shape}."
            )

    @property
    def num_inducing(self) -> int:
        """M, the number of inducing inputs."""
        return int(self.inducing.init.shape[0])

    @pyrox_method
    def __call__(
        self,
        x: ArrayLike,
        y: ArrayLike | None = None,
        *,
        batch_size: int | None = None,
        num_data: int | None = None,
    ) -> None:
        """The model: θ, Z and the bound's sites (see :func:`svgp_observe`)."""
        svgp_observe(
            self.kernel,
            x,
            y,
            self.get_param("inducing"),
            self.get_param("noise"),
            site=self.site_name("u"),
            batch_size=batch_size,
            num_data=num_data,
            jitter=self.jitter,
        )

    def guide(self, *args, **kwargs) -> dict[str, Array]:
        """The guide of :math:`\\mathbf u` alone (:func:`svgp_guide`); pair it with a guide for θ,
        for example in ``numpyro.infer.autoguide.AutoGuideList``."""
        return svgp_guide(self.num_inducing, self.site_name("u"))

    @pyrox_method
    def predict(self, x_test: ArrayLike) -> GPPrediction:
        """Predictive moments at the current values (substitute the fitted parameters and
        the guide's ``u_loc``/``u_scale_tril``, e.g. with ``numpyro.handlers.substitute``)."""
        m = self.num_inducing
        q_mean = numpyro.param(self.site_name("u_loc"), jnp.zeros(m))
        q_sqrt = numpyro.param(self.site_name("u_scale_tril"), jnp.eye(m))
        return sparse_predict(
            self.kernel,
            self.get_param("inducing"),
            q_mean,
            q_sqrt,
            x_test,
            self.get_param("noise"),
            self.jitter,
        )
