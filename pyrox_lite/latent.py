r"""Latent GPs: a GP prior on f whose observations are not Gaussian.

When the observations are counts or classes, the function values
:math:`\mathbf f = f(X)` at the training inputs cannot be integrated out in closed
form: they are sampled beside the hyperparameters :math:`\boldsymbol\theta`. NUTS
samples them far better in the *whitened* (non-centred) form

.. math:: \mathbf u \sim \mathcal N(\mathbf 0, I), \qquad
    \mathbf f = \mu + L_{\boldsymbol\theta} \mathbf u, \qquad
    L_{\boldsymbol\theta} L_{\boldsymbol\theta}^\top = K_{\boldsymbol\theta}(X, X) + \delta I,

than as :math:`\mathbf f \sim \mathcal N(\mu, K_{\boldsymbol\theta} + \delta I)` directly,
because the whitened coordinates are a priori independent of
:math:`\boldsymbol\theta` and of each other. :math:`\delta` is the jitter
(:data:`pyrox_lite.JITTER`). The likelihood is any NumPyro distribution of
:math:`\mathbf f` (``dist.Poisson(rate=jnp.exp(f))``, ``dist.Bernoulli(logits=f)``, ...).

* :func:`whiten` and :func:`unwhiten` map between :math:`\mathbf f - \mu` and
  :math:`\mathbf u` for a given Gram matrix: what a hand-written model needs.
* :class:`LatentGP` is a :class:`~pyrox_lite.params.Parameterized` module: its kernel's
  ``PyroxParam`` fields (and an optional constant mean) are the hyperparameters, it
  registers the whitened site and returns :math:`\mathbf f`.
* :func:`predict_latent` gives the conditional of :math:`f(X_*)` given
  :math:`\mathbf f` for one draw; loop over posterior draws with ``jax.lax.map`` or
  NumPyro's ``Predictive``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpyro
import numpyro.distributions as dist
from jax import Array
from jax.typing import ArrayLike
from numpyro.distributions import constraints

from ._checks import (
    as_float,
    check_data,
    check_factorised,
    check_finite,
    check_not_empty,
    check_positive,
    check_precision,
    check_same_features,
)
from .likelihood import JITTER
from .params import Parameterized, PyroxParam, one_call, pyrox_method

__all__ = ["whiten", "unwhiten", "LatentPrediction", "predict_latent", "LatentGP"]


def _gram_and_vector(gram: ArrayLike, v: ArrayLike, v_name: str) -> tuple[Array, Array]:
    gram, v = as_float(gram), as_float(v)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"`gram` must be a square matrix of shape (N, N); got shape {gram.shape}.")
    check_not_empty(gram.shape[0], "`gram`")
    if v.ndim != 1 or v.shape[0] != gram.shape[0]:
        raise ValueError(
            f"`{v_name}` must have shape ({gram.shape[0]},), one value per row of `gram`; "
            f"got shape {v.shape}."
        )
    check_precision(gram, "gram")
    check_finite(gram, "gram")
    check_finite(v, v_name)
    return gram, v


def _cholesky(gram: Array, jitter: float, what: str) -> Array:
    """``chol(gram + jitter * I)``, with the package's error where an eager factorisation fails."""
    cov = gram + jitter * jnp.eye(gram.shape[0], dtype=gram.dtype)
    chol = jnp.linalg.cholesky(cov)
    check_factorised(chol, cov, what)
    return chol


def unwhiten(u: ArrayLike, gram: ArrayLike, jitter: float = JITTER) -> Array:
    r"""The correlated values :math:`L\mathbf u`, with :math:`LL^\top = K + \delta I`.

    Args:
        u: whitened values, shape ``(N,)``; a priori :math:`\mathcal N(\mathbf 0, I)`.
        gram: the Gram matrix :math:`K`, shape ``(N, N)``.
        jitter: :math:`\delta`, added to the diagonal before factorising.

    If :math:`\mathbf u \sim \mathcal N(\mathbf 0, I)` then
    :math:`L\mathbf u \sim \mathcal N(\mathbf 0, K + \delta I)`. Add a mean afterwards.
    """
    gram, u = _gram_and_vector(gram, u, "u")
    return _cholesky(gram, jitter, "unwhiten") @ u


def whiten(f: ArrayLike, gram: ArrayLike, jitter: float = JITTER) -> Array:
    r"""The whitened values :math:`L^{-1}\mathbf f`, with :math:`LL^\top = K + \delta I`.

    The inverse of :func:`unwhiten` (subtract a mean first). Arguments as there, with
    ``f`` of shape ``(N,)``.
    """
    gram, f = _gram_and_vector(gram, f, "f")
    return jsl.solve_triangular(_cholesky(gram, jitter, "whiten"), f, lower=True)


class LatentPrediction(NamedTuple):
    """Conditional moments of the latent function at test inputs, each of shape ``(M,)``."""

    mean: Array
    """Conditional mean of f at the test inputs."""
    var: Array
    """Conditional variance of f at the test inputs (clipped at 0 against round-off)."""


def predict_latent(
    kernel: Callable[[Array, Array], Array],
    x: ArrayLike,
    f: ArrayLike,
    x_test: ArrayLike,
    mean: ArrayLike = 0.0,
    jitter: float = JITTER,
) -> LatentPrediction:
    r"""The GP conditional of :math:`f(X_*)` given :math:`\mathbf f = f(X)`, for one draw.

    With :math:`C = K_{XX} + \delta I = LL^\top`:
    mean :math:`\mu + K_{*X} C^{-1} (\mathbf f - \mu)`,
    variance :math:`k_{**} - \operatorname{diag}(K_{*X} C^{-1} K_{X*})`.
    At the training inputs this is f itself up to the jitter: the variance is at most
    :math:`\delta`, and the mean differs from :math:`\mathbf f` by
    :math:`\delta C^{-1}(\mathbf f - \mu)`, at most :math:`\sqrt\delta\,\lVert\mathbf u\rVert`
    for :math:`\mathbf f = \mu + L\mathbf u`.

    Args:
        kernel: ``kernel(x1, x2) -> Gram matrix`` at the draw's hyperparameters (a plain
            kernel, or a ``Parameterized`` one under a handler that supplies its sites).
        x: training inputs, shape ``(N,)`` or ``(N, D)``.
        f: the latent values at ``x`` for this draw, shape ``(N,)``.
        x_test: test inputs, shape ``(M,)`` or ``(M, D)``.
        mean: the constant prior mean :math:`\mu` of f.
        jitter: :math:`\delta`, as in the model.

    Pure and jit-able. For posterior draws, loop: ``jax.lax.map(one_draw, draws)``
    compiles one program that takes one draw at a time (``jax.vmap`` would batch the
    triangular solves; see :func:`pyrox_lite.predict`).

    Raises:
        ValueError: for bad shapes, an empty training set, or NaN.
        numpy.linalg.LinAlgError: in an eager call whose Cholesky factorisation fails.
    """
    x, f = check_data(x, f)
    x_test, _ = check_data(x_test, x_name="x_test")
    check_same_features(x, x_test)
    mean = as_float(mean)
    if mean.ndim != 0:
        raise ValueError(
            f"`mean` must be a scalar (a constant prior mean); got shape {mean.shape}."
        )
    check_finite(mean, "mean")
    with one_call():  # a kernel that registers NumPyro sites does so once
        k_xx = kernel(x, x)
        k_xt = kernel(x, x_test)
        k_tt = jax.vmap(lambda t: kernel(t[None], t[None])[0, 0])(x_test)
    chol = _cholesky(k_xx, jitter, "predict_latent")
    # One triangular solve for both moments: w = L^{-1}(f - mu), V = L^{-1} K_{X*}.
    rhs = jnp.concatenate([(f - mean)[:, None], k_xt], axis=1)
    solved = jsl.solve_triangular(chol, rhs, lower=True)
    w, v = solved[:, 0], solved[:, 1:]
    var = jnp.maximum(k_tt - jnp.sum(v**2, axis=0), 0.0)
    return LatentPrediction(mean + v.T @ w, var)


class LatentGP(Parameterized):
    r"""A whitened latent GP: registers :math:`\mathbf u \sim \mathcal N(\mathbf 0, I)`
    and returns :math:`\mathbf f = \mu + L_{\boldsymbol\theta}\mathbf u`.

    Attributes:
        kernel: a ``Parameterized`` kernel (:class:`pyrox_lite.gp.RBF`, a sum, ...); its
            ``PyroxParam`` fields are hyperparameters.
        mean: the constant prior mean :math:`\mu` of f, a ``PyroxParam`` on the real line
            (site ``"{scope}.mean"``), or ``None`` for a zero mean.
        latent_site: name of the whitened site within the module's scope: the site is
            ``"{scope}.{latent_site}"``, of shape ``(N,)``.
        f_site: name of the deterministic site that records f, ``"{scope}.{f_site}"``;
            ``None`` records nothing.
        jitter: :math:`\delta`, added to the diagonal of :math:`K_{\boldsymbol\theta}(X, X)`.

    The likelihood is the user's: any NumPyro distribution of the returned f::

        def model(x, y=None):
            f = latent(x)
            numpyro.sample("y", dist.Poisson(jnp.exp(f)), obs=y)
    """

    kernel: Parameterized
    mean: PyroxParam | None = eqx.field(default=None, metadata={"domain": constraints.real})
    latent_site: str = eqx.field(default="u", static=True)
    f_site: str | None = eqx.field(default="f", static=True)
    jitter: float = eqx.field(default=JITTER, static=True)

    def __check_init__(self) -> None:
        if not isinstance(self.kernel, Parameterized) or not callable(self.kernel):
            raise TypeError(
                f"LatentGP: `kernel` must be a Parameterized kernel such as "
                f"pyrox_lite.gp.RBF(...); got {type(self.kernel).__name__}. For a plain "
                f"kernel, write the model by hand with `unwhiten`."
            )
        for field, name in (("latent_site", self.latent_site), ("f_site", self.f_site)):
            if name is None and field == "f_site":
                continue
            if not isinstance(name, str) or not name or "." in name or name != name.strip():
                raise ValueError(
                    f"LatentGP: `{field}` must be a non-empty name without dots or spaces "
                    f"around it (the scope is added: '{{scope}}.{{name}}'); got {name!r}."
                )
        if self.latent_site == self.f_site:
            raise ValueError(
                f"LatentGP: `latent_site` and `f_site` are both {self.latent_site!r}; "
                f"give them different names."
            )
        check_positive(self.jitter, "jitter")

    def site_names(self) -> list[str]:
        """The kernel's sites, the mean's, the whitened site and the recorded f, in order."""
        names = super().site_names() + [self.site_name(self.latent_site)]
        return names + ([self.site_name(self.f_site)] if self.f_site is not None else [])

    def _mean(self) -> Array | float:
        return 0.0 if self.mean is None else self.get_param("mean")

    @pyrox_method
    def __call__(self, x: ArrayLike) -> Array:
        """Register the hyperparameters and the whitened site; return f at ``x``, shape ``(N,)``."""
        x, _ = check_data(x)
        chol = _cholesky(self.kernel(x, x), self.jitter, "LatentGP")
        mean = self._mean()  # the sites in the order of site_names()
        n = x.shape[0]
        prior = dist.Normal(jnp.zeros(n, dtype=chol.dtype), 1.0).to_event(1)
        u = self.pyrox_sample(self.latent_site, prior)
        if u.shape != (n,):
            raise ValueError(
                f"LatentGP: the site {self.site_name(self.latent_site)!r} has shape {u.shape}, "
                f"but x has {n} points; substitute values of shape ({n},)."
            )
        f = mean + chol @ u
        if self.f_site is not None:
            numpyro.deterministic(self.site_name(self.f_site), f)
        return f

    @pyrox_method
    def predict(self, x: ArrayLike, x_test: ArrayLike) -> LatentPrediction:
        """The conditional of f at ``x_test`` given f at ``x``, at the current values of the
        sites (substitute one posterior draw of the hyperparameters and of u)."""
        f = self(x)
        return predict_latent(self.kernel, x, f, x_test, self._mean(), self.jitter)
