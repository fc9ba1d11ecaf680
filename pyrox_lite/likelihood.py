r"""The Gaussian likelihood, integrated against a GP prior.

With :math:`f \sim \mathcal{GP}(0, k)` and :math:`y_i = f(x_i) + \varepsilon_i`,
:math:`\varepsilon_i \sim \mathcal{N}(0, \sigma^2)`, the targets are jointly Gaussian,
:math:`y \sim \mathcal{N}(0, K + \sigma^2 I)`; a fixed ``JITTER * I`` is added for numerical
safety. :func:`gp_log_marginal` evaluates the log density from one Cholesky factor, and its
hand-derived derivative reuses that factor. It is a JVP rule, linear in the tangents,

.. math:: d \log p = -\alpha^\top dy + \tfrac12 \alpha^\top dC\, \alpha
    - \tfrac12 \langle C^{-1}, dC \rangle, \qquad \alpha = C^{-1} y,

so forward mode (``jax.jvp``, ``jax.jacfwd``) uses it directly and JAX transposes it for
reverse mode (``jax.grad``), where it gives the gradient
:math:`\partial \log p / \partial C = \tfrac12(\alpha\alpha^\top - C^{-1})`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jax import Array
from jax.custom_derivatives import SymbolicZero
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints

from ._checks import (
    as_float,
    check_data,
    check_factorised,
    check_not_empty,
    check_positive,
    check_precision,
    check_same_features,
)
from .params import one_call

__all__ = ["JITTER", "gp_log_marginal", "GPMarginal", "GPPrediction", "predict"]

JITTER = 1e-6
"""Added to the diagonal of every training covariance."""

_LOG_2PI = math.log(2.0 * math.pi)


# The gradient needs C^{-1} = L^{-T} L^{-1}. cho_solve(L, I) spends 2N^3 flops in LAPACK's
# trsm, ignoring that I is triangular and the product symmetric. The recursions below use
# both: L^{-1} by 2x2 block inversion, then L^{-T} L^{-1} block by block, skipping blocks
# known to be zero and the upper half: 4N^3/3 flops, nearly all in matrix products, three
# times faster than cho_solve at N = 1000. They halve a block at most _LEVELS times, never
# below _LEAF rows (deeper recursion gains no speed and costs compile time).
_LEAF = 64
_LEVELS = 4


def _tril_inv(chol: Array, levels: int = _LEVELS) -> Array:
    """Inverse of the lower-triangular ``chol`` (lower-triangular too)."""
    n = chol.shape[-1]
    if n <= _LEAF or levels == 0:
        return jsl.solve_triangular(chol, jnp.eye(n, dtype=chol.dtype), lower=True)
    h = n // 2
    inv_a, inv_d = _tril_inv(chol[:h, :h], levels - 1), _tril_inv(chol[h:, h:], levels - 1)
    # [[A, 0], [B, D]]^{-1} = [[A^{-1}, 0], [-D^{-1} B A^{-1}, D^{-1}]]
    lower_left = -(inv_d @ chol[h:, :h]) @ inv_a
    return jnp.block([[inv_a, jnp.zeros((h, n - h), chol.dtype)], [lower_left, inv_d]])


def _gram_t(m: Array, levels: int = _LEVELS) -> Array:
    """``m.T @ m`` for lower-triangular ``m``, skipping the blocks known to be zero."""
    n = m.shape[-1]
    if n <= _LEAF or levels == 0:
        return m.T @ m
    h = n // 2
    # [[P, 0], [Q, R]]^T [[P, 0], [Q, R]] = [[P^T P + Q^T Q, Q^T R], [R^T Q, R^T R]]
    q, r = m[h:, :h], m[h:, h:]
    lower_left = r.T @ q
    top_left = _gram_t(m[:h, :h], levels - 1) + q.T @ q
    return jnp.block([[top_left, lower_left.T], [lower_left, _gram_t(r, levels - 1)]])


def _factor(y: Array, cov: Array) -> tuple[Array, Array, Array]:
    chol = jnp.linalg.cholesky(cov)
    alpha = jsl.cho_solve((chol, True), y)
    value = -0.5 * (y @ alpha) - jnp.sum(jnp.log(jnp.diagonal(chol))) - 0.5 * y.shape[0] * _LOG_2PI
    return value, chol, alpha


@jax.custom_jvp
def _logpdf(y: Array, cov: Array) -> Array:
    return _factor(y, cov)[0]


@functools.partial(_logpdf.defjvp, symbolic_zeros=True)
def _logpdf_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Array]) -> tuple[Array, Array]:
    # The rule of the module's docstring. alpha and C^{-1} are primal values, so the rule is
    # linear in (dy, dC) and, transposed for reverse mode, a few O(N^2) products. C^{-1} is
    # built only when the covariance has a tangent (SymbolicZero: not differentiated).
    y, cov = primals
    dy, dcov = tangents
    value, chol, alpha = _factor(y, cov)
    terms = []
    if not isinstance(dy, SymbolicZero):
        terms.append(-(alpha @ dy))
    if not isinstance(dcov, SymbolicZero):
        # alpha^T dC alpha - <C^{-1}, dC> = <alpha alpha^T - C^{-1}, dC>: one primal matrix,
        # so reverse mode's cotangent of C is 1/2 g (alpha alpha^T - C^{-1}) in one pass.
        cov_grad = jnp.outer(alpha, alpha) - _gram_t(_tril_inv(chol))
        terms.append(0.5 * jnp.sum(cov_grad * dcov))
    if not terms:
        return value, jnp.zeros_like(value)
    return value, sum(terms[1:], terms[0])


def gp_log_marginal(y: ArrayLike, cov: ArrayLike) -> Array:
    r"""Log density, shape ``(...)``, of ``y``, shape ``(..., N)``, under :math:`\mathcal{N}(0, C)`:
    the GP marginal likelihood. One Cholesky factor serves the value and the derivative.

    .. math:: \log p(y) = -\tfrac12 y^\top C^{-1} y - \tfrac12 \log|C| - \tfrac{N}{2}\log 2\pi

    Args:
        cov: symmetric positive-definite covariance, shape ``(..., N, N)``, already including
            noise and jitter.

    Raises:
        ValueError: for mismatched shapes, N = 0, or NaN in ``y``.
        numpy.linalg.LinAlgError: in an eager call whose Cholesky factorisation fails, naming
            the likely causes. Under ``jit`` nothing is checked and the result is NaN.

    Warns:
        UserWarning: when float64 is not enabled.
    """
    y, cov = as_float(y), as_float(cov)
    if cov.ndim < 2 or cov.shape[-1] != cov.shape[-2] or y.shape[-1:] != cov.shape[-1:]:
        raise ValueError(
            f"`cov` must have shape (..., N, N) and `y` shape (..., N); got {cov.shape} and "
            f"{y.shape}."
        )
    check_not_empty(cov.shape[-1], "`cov`")
    check_precision(cov, "cov")
    return _log_marginal(y, cov, "gp_log_marginal")


def _log_marginal(y: Array, cov: Array, what: str) -> Array:
    """The log density for checked shapes; an eager result that is not finite is explained
    afterwards (NaN in ``y``, or a failed factorisation), so a valid call pays for no check."""
    value = jnp.vectorize(_logpdf, signature="(n),(n,n)->()")(y, cov)
    check_factorised(value, cov, what, y=y)
    return value


class GPMarginal(Distribution):
    r"""Distribution of GP targets with the latent function integrated out.

    :math:`y \sim \mathcal{N}(0, K + (\sigma^2 + \text{jitter}) I)`, ``gram`` :math:`K` and
    ``noise`` :math:`\sigma`. ``log_prob`` is :func:`gp_log_marginal`, with its fast gradient.
    """

    arg_constraints = {"gram": constraints.real_matrix, "noise": constraints.positive}
    support = constraints.real_vector
    pytree_data_fields = ("gram", "noise")
    pytree_aux_fields = ("jitter",)

    def __init__(
        self,
        gram: ArrayLike,
        noise: ArrayLike,
        jitter: float = JITTER,
        *,
        validate_args: bool | None = None,
    ) -> None:
        self.gram, self.noise, self.jitter = as_float(gram), as_float(noise), jitter
        if self.gram.ndim < 2 or self.gram.shape[-1] != self.gram.shape[-2]:
            raise ValueError(f"`gram` must have shape (..., N, N); got {self.gram.shape}.")
        check_not_empty(self.gram.shape[-1], "`gram`")
        check_precision(self.gram, "gram")
        batch_shape = jnp.broadcast_shapes(self.gram.shape[:-2], jnp.shape(self.noise))
        super().__init__(batch_shape, self.gram.shape[-1:], validate_args=validate_args)

    @property
    def covariance_matrix(self) -> Array:
        n = self.gram.shape[-1]
        nugget = jnp.asarray(self.noise)[..., None, None] ** 2 + self.jitter
        return self.gram + nugget * jnp.eye(n, dtype=self.gram.dtype)

    @property
    def mean(self) -> Array:
        return jnp.zeros(self.batch_shape + self.event_shape, dtype=self.gram.dtype)

    @property
    def variance(self) -> Array:
        diagonal = jnp.diagonal(self.covariance_matrix, axis1=-2, axis2=-1)
        return jnp.broadcast_to(diagonal, self.batch_shape + self.event_shape)

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        cov = self.covariance_matrix
        chol = jnp.linalg.cholesky(cov)
        check_factorised(chol, cov, "GPMarginal.sample")
        eps = jax.random.normal(key, sample_shape + self.batch_shape + self.event_shape, chol.dtype)
        return jnp.einsum("...ij,...j->...i", chol, eps)

    def log_prob(self, value: ArrayLike) -> Array:
        value = as_float(value)
        if value.shape[-1:] != self.event_shape:
            raise ValueError(
                f"GPMarginal: observations must have {self.event_shape[0]} entries, one per row "
                f"of `gram`; got shape {value.shape}."
            )
        return _log_marginal(value, self.covariance_matrix, "GPMarginal.log_prob")


class GPPrediction(NamedTuple):
    """Posterior predictive moments at test inputs, each of shape ``(M,)``: the mean of f (and
    of y), the variance of the latent f, and that of a new observation y = f + noise."""

    mean: Array
    var_f: Array
    var_y: Array


def predict(
    kernel: Callable[[Array, Array], Array],
    x: ArrayLike,
    y: ArrayLike,
    x_test: ArrayLike,
    noise: ArrayLike,
    jitter: float = JITTER,
) -> GPPrediction:
    r"""Exact GP posterior predictive at ``x_test``, shape ``(M,)`` or ``(M, D)``, for fixed
    hyperparameters. With :math:`C = K_{XX} + (\sigma^2 + \text{jitter}) I = LL^\top`: mean
    :math:`K_{*X} C^{-1} y = (L^{-1} K_{X*})^\top L^{-1} y`,
    :math:`\operatorname{var} f_* = k_{**} - \lVert L^{-1} K_{X*} \rVert^2`,
    :math:`\operatorname{var} y_* = \operatorname{var} f_* + \sigma^2`.

    Args:
        kernel: ``kernel(x1, x2) -> Gram matrix``, e.g. ``pyrox_lite.kernels.RBF(1.0, 1.0)``.
        noise: observation noise standard deviation :math:`\sigma`.

    Pure and jit-able. Over posterior draws, loop with ``jax.lax.map`` or NumPyro's
    ``Predictive``, not ``jax.vmap``: batched triangular solves have been seen to deadlock
    on CPU with jaxlib 0.10.2 (the book's note ``vmap-caveat``), and were not faster.

    Raises:
        ValueError: for bad shapes, N = 0 training points, NaN, or a non-positive noise.
        numpy.linalg.LinAlgError: in an eager call whose Cholesky factorisation fails.
    """
    x, y = check_data(x, y)
    x_test, _ = check_data(x_test, x_name="x_test", allow_empty=True)
    check_same_features(x, x_test)
    noise = as_float(noise)
    check_positive(noise, "noise")
    with one_call():  # a kernel that registers NumPyro sites does so once
        k_xx, k_tx = kernel(x, x), kernel(x_test, x)
        k_tt = jax.vmap(lambda t: kernel(t[None], t[None])[0, 0])(x_test)
    cov = k_xx + (noise**2 + jitter) * jnp.eye(k_xx.shape[0], dtype=k_xx.dtype)
    chol = jnp.linalg.cholesky(cov)
    check_factorised(chol, cov, "predict")
    # One triangular solve serves both moments: with w = L^{-1} y and V = L^{-1} K_{X*},
    # the mean K_{*X} C^{-1} y is V^T w and the variance reduction is the column norms of V.
    solved = jsl.solve_triangular(chol, jnp.concatenate([y[:, None], k_tx.T], axis=1), lower=True)
    w, v = solved[:, 0], solved[:, 1:]
    var_f = k_tt - jnp.sum(v**2, axis=0)
    return GPPrediction(v.T @ w, var_f, var_f + noise**2)
