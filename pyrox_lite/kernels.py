"""Stationary covariance functions.

Each kernel's math lives in exactly one pure function (:func:`rbf`,
:func:`matern32`, :func:`matern52`) that maps two sets of inputs and the
hyperparameters to a Gram matrix. The plain :class:`equinox.Module` kernels
below (:class:`RBF`, :class:`Matern32`, :class:`Matern52`) hold the
hyperparameters as array leaves and call those functions; the ``Parameterized``
kernels of :mod:`pyrox_lite.gp` call the very same functions.

Inputs may have shape ``(N,)`` (one feature) or ``(N, D)``. The lengthscale is a
scalar or a length-``D`` vector (one lengthscale per feature).
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from ._checks import as_float, check_positive

KernelFn = Callable[[ArrayLike, ArrayLike, ArrayLike, ArrayLike], Array]

__all__ = ["rbf", "matern32", "matern52", "RBF", "Matern32", "Matern52", "Stationary"]


def _as_2d(x: ArrayLike, name: str) -> Array:
    x = as_float(x)
    if x.ndim == 1:
        return x[:, None]
    if x.ndim == 2:
        return x
    raise ValueError(f"`{name}` must have shape (N,) or (N, D); got shape {x.shape}.")


def scaled_sqdist(x1: ArrayLike, x2: ArrayLike, lengthscale: ArrayLike) -> Array:
    """Squared distances ``|x1_i - x2_j|**2 / lengthscale**2``, shape ``(N1, N2)``."""
    a = _as_2d(x1, "x1")
    # One array when both sides are the same inputs (a Gram matrix): the traced program
    # is then the same whether or not the caller converted x to a JAX array first.
    b = a if x2 is x1 else _as_2d(x2, "x2")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"`x1` and `x2` must have the same number of features; got {a.shape[1]} and {b.shape[1]}."
        )
    ell = as_float(lengthscale)
    if ell.ndim > 1 or (ell.ndim == 1 and ell.shape[0] not in (1, a.shape[1])):
        raise ValueError(
            f"`lengthscale` must be a scalar or have shape ({a.shape[1]},); got shape {ell.shape}."
        )
    a, b = a / ell, b / ell
    return jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)


@jax.custom_jvp
def _safe_sqrt(r2: Array) -> Array:
    """``sqrt(r2)`` whose derivative is 0 instead of infinite where ``r2 == 0``.

    The Matern kernels are smooth at r = 0 and ``r2`` has zero derivative there, so
    the product should be 0, not ``inf * 0``. Only the derivative is special-cased:
    the value stays a plain ``sqrt`` (a double-``where`` on the value was seen to
    produce NaN gradients under ``jit(vmap(grad(...)))`` on CPU).
    """
    return jnp.sqrt(r2)


@_safe_sqrt.defjvp
def _safe_sqrt_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    (r2,), (dr2,) = primals, tangents
    r = jnp.sqrt(r2)
    positive = r > 0
    return r, jnp.where(positive, 0.5 * dr2 / jnp.where(positive, r, 1.0), 0.0)


def rbf(x1: ArrayLike, x2: ArrayLike, lengthscale: ArrayLike, amplitude: ArrayLike) -> Array:
    r"""Radial basis function (squared exponential) kernel.

    .. math:: k(x, x') = \alpha^2 \exp\!\left(-\frac{|x - x'|^2}{2\ell^2}\right)

    Args:
        x1: inputs, shape ``(N1,)`` or ``(N1, D)``.
        x2: inputs, shape ``(N2,)`` or ``(N2, D)``.
        lengthscale: :math:`\ell > 0`, scalar or shape ``(D,)``.
        amplitude: :math:`\alpha > 0`, the signal standard deviation.

    Returns:
        The Gram matrix, shape ``(N1, N2)``.
    """
    return as_float(amplitude) ** 2 * jnp.exp(-0.5 * scaled_sqdist(x1, x2, lengthscale))


def matern32(x1: ArrayLike, x2: ArrayLike, lengthscale: ArrayLike, amplitude: ArrayLike) -> Array:
    r"""Matérn 3/2 kernel, with :math:`r = |x - x'| / \ell`.

    .. math:: k(x, x') = \alpha^2 (1 + \sqrt{3} r) \exp(-\sqrt{3} r)

    Arguments and result as for :func:`rbf`.
    """
    s = math.sqrt(3.0) * _safe_sqrt(scaled_sqdist(x1, x2, lengthscale))
    return as_float(amplitude) ** 2 * (1.0 + s) * jnp.exp(-s)


def matern52(x1: ArrayLike, x2: ArrayLike, lengthscale: ArrayLike, amplitude: ArrayLike) -> Array:
    r"""Matérn 5/2 kernel, with :math:`r = |x - x'| / \ell`.

    .. math:: k(x, x') = \alpha^2 \left(1 + \sqrt{5} r + \tfrac{5}{3} r^2\right) \exp(-\sqrt{5} r)

    Arguments and result as for :func:`rbf`.
    """
    r2 = scaled_sqdist(x1, x2, lengthscale)
    s = math.sqrt(5.0) * _safe_sqrt(r2)
    return as_float(amplitude) ** 2 * (1.0 + s + 5.0 / 3.0 * r2) * jnp.exp(-s)


class Stationary(eqx.Module):
    """A plain Equinox kernel: the hyperparameters are ordinary array leaves.

    Subclasses only choose the covariance function ``fn``. Calling the module
    returns the Gram matrix ``fn(x1, x2, lengthscale, amplitude)``.
    """

    lengthscale: Array = eqx.field(converter=as_float)
    amplitude: Array = eqx.field(converter=as_float)
    fn: ClassVar[KernelFn]

    def __check_init__(self) -> None:
        check_positive(self.lengthscale, "lengthscale")
        check_positive(self.amplitude, "amplitude")

    def __call__(self, x1: ArrayLike, x2: ArrayLike) -> Array:
        return type(self).fn(x1, x2, self.lengthscale, self.amplitude)


class RBF(Stationary):
    """Plain RBF kernel module; see :func:`rbf`."""

    fn = staticmethod(rbf)


class Matern32(Stationary):
    """Plain Matérn 3/2 kernel module; see :func:`matern32`."""

    fn = staticmethod(matern32)


class Matern52(Stationary):
    """Plain Matérn 5/2 kernel module; see :func:`matern52`."""

    fn = staticmethod(matern52)
