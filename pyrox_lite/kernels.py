"""Stationary covariance functions and their sums and products.

Each kernel's math lives in one pure function, from two sets of inputs, shape ``(N,)`` or
``(N, D)``, and the hyperparameters to a Gram matrix. The plain :class:`equinox.Module`
kernels below hold the hyperparameters as array leaves and call those functions, as do the
``Parameterized`` kernels of :mod:`pyrox_lite.gp`; both families share one implementation of
the call, of ``k1 + k2`` (a :class:`Sum`) and of ``k1 * k2`` (a :class:`Product`).

``amplitude=None`` builds a kernel without an amplitude (a unit variance). In a product only
the first factor may carry one: two amplitudes multiply, and two parameters whose product is
all the data can see are not identified.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
import operator
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from ._checks import as_float, check_positive

FUNCTIONS = ["rbf", "matern32", "matern52", "periodic", "rational_quadratic"]
# A class per function, of the same name in both families (here and in pyrox_lite.gp).
CLASSES = ["RBF", "Matern32", "Matern52", "Periodic", "RationalQuadratic"]
__all__ = [*FUNCTIONS, "AbstractKernel", "Stationary", *CLASSES, "Sum", "Product"]


def _as_2d(x: ArrayLike, name: str) -> Array:
    x = as_float(x)
    if x.ndim not in (1, 2):
        raise ValueError(f"`{name}` must have shape (N,) or (N, D); got shape {x.shape}.")
    return x[:, None] if x.ndim == 1 else x


def _pair(x1: ArrayLike, x2: ArrayLike) -> tuple[Array, Array]:
    """Both sets of inputs as ``(N, D)`` arrays with the same number of features."""
    a = _as_2d(x1, "x1")
    # One array when both sides are the same inputs (a Gram matrix): the traced program
    # is then the same whether or not the caller converted x to a JAX array first.
    b = a if x2 is x1 else _as_2d(x2, "x2")
    if a.shape[1] != b.shape[1]:
        d1, d2 = a.shape[1], b.shape[1]
        raise ValueError(f"`x1` and `x2` must have the same number of features; got {d1} and {d2}.")
    return a, b


def _scalar(value: ArrayLike, name: str) -> Array:
    value = as_float(value)
    if value.ndim != 0:
        raise ValueError(f"`{name}` must be a scalar; got shape {value.shape}.")
    return value


def scaled_sqdist(x1: ArrayLike, x2: ArrayLike, lengthscale: ArrayLike) -> Array:
    """Squared distances ``|x1_i - x2_j|**2 / lengthscale**2``, shape ``(N1, N2)``."""
    a, b = _pair(x1, x2)
    ell = as_float(lengthscale)
    if ell.ndim > 1 or (ell.ndim == 1 and ell.shape[0] not in (1, a.shape[1])):
        raise ValueError(
            f"`lengthscale` must be a scalar or have shape ({a.shape[1]},); got shape {ell.shape}."
        )
    a, b = a / ell, b / ell
    return jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)


@jax.custom_jvp
def _safe_sqrt(r2: Array) -> Array:
    """``sqrt(r2)`` whose derivatives of every order are 0, not infinite, where ``r2 == 0``: the
    Matérn kernels are smooth at r = 0, where ``r2`` has zero derivative. Only the derivative is
    special-cased (a double-``where`` on the value gave NaN gradients under
    ``jit(vmap(grad(...)))`` on CPU); the rule calls this function again, so Hessians are safe."""
    return jnp.sqrt(r2)


@_safe_sqrt.defjvp
def _safe_sqrt_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    (r2,), (dr2,) = primals, tangents
    r = _safe_sqrt(r2)
    positive = r > 0
    return r, jnp.where(positive, 0.5 * dr2 / jnp.where(positive, r, 1.0), 0.0)


def rbf(x1: ArrayLike, x2: ArrayLike, lengthscale: ArrayLike, amplitude: ArrayLike) -> Array:
    r"""Radial basis function (squared exponential) kernel: the Gram matrix, shape
    ``(N1, N2)``, of inputs ``x1`` of shape ``(N1,)`` or ``(N1, D)`` and ``x2`` likewise.

    .. math:: k(x, x') = \alpha^2 \exp\!\left(-\frac{|x - x'|^2}{2\ell^2}\right)

    Args:
        lengthscale: :math:`\ell > 0`, scalar or shape ``(D,)``.
        amplitude: :math:`\alpha > 0`, the signal standard deviation.
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


def periodic(
    x1: ArrayLike, x2: ArrayLike, lengthscale: ArrayLike, period: ArrayLike, amplitude: ArrayLike
) -> Array:
    r"""Periodic (exp-sine-squared) kernel; with several features, the product of the
    one-feature kernels.

    .. math:: k(x, x') = \alpha^2 \exp\!\left(-\frac{2}{\ell^2} \sum_{d=1}^{D}
        \sin^2\!\left(\frac{\pi (x_d - x'_d)}{p}\right)\right)

    A draw repeats exactly every :math:`p` along each feature; :math:`\ell` sets how wiggly
    one period is, in units of the sine (as in scikit-learn's ``ExpSineSquared``, equal for one
    feature). A product of valid kernels is valid; the sine of the Euclidean distance is not,
    for D > 1 (its Gram matrices can have negative eigenvalues). ``lengthscale`` and ``period``
    (in input units) are scalars; the rest as for :func:`rbf`.
    """
    a, b = _pair(x1, x2)
    ell, p = _scalar(lengthscale, "lengthscale"), _scalar(period, "period")
    # sin(u - v) = sin u cos v - cos u sin v needs sines and cosines of the N1 + N2 inputs
    # only, not of the N1 * N2 differences (a sine costs ten times an exp on CPU).
    u, v = math.pi * a / p, math.pi * b / p
    s = jnp.sin(u)[:, None, :] * jnp.cos(v)[None] - jnp.cos(u)[:, None, :] * jnp.sin(v)[None]
    return as_float(amplitude) ** 2 * jnp.exp(-2.0 * jnp.sum(s**2, axis=-1) / ell**2)


def rational_quadratic(
    x1: ArrayLike, x2: ArrayLike, lengthscale: ArrayLike, alpha: ArrayLike, amplitude: ArrayLike
) -> Array:
    r"""Rational-quadratic kernel, with :math:`r = |x - x'| / \ell` and shape :math:`a` (the
    scalar ``alpha``); the rest as for :func:`rbf`.

    .. math:: k(x, x') = \alpha^2 \left(1 + \frac{r^2}{2 a}\right)^{-a}

    A scale mixture of RBF kernels whose inverse squared lengthscales are gamma distributed:
    small :math:`a` mixes many lengthscales; as :math:`a \to \infty` it becomes :func:`rbf`.
    """
    shape = _scalar(alpha, "alpha")
    r2 = scaled_sqdist(x1, x2, lengthscale)
    return as_float(amplitude) ** 2 * jnp.exp(-shape * jnp.log1p(r2 / (2.0 * shape)))


def _optional(value: ArrayLike | None) -> Array | None:
    return None if value is None else as_float(value)


class KernelAlgebra(eqx.Module):
    """What the kernels of both families share (not part of the API): ``k1 + k2`` and ``k1 * k2``
    give the ``Sum`` and ``Product`` of the family ``(base, Sum, Product)`` that each family's
    base class sets, flattening nested composites of one kind (``k1 + k2 + k3``: three terms)."""

    family: ClassVar[tuple[type, type, type]]

    @abc.abstractmethod
    def __call__(self, x1: ArrayLike, x2: ArrayLike) -> Array:
        """The Gram matrix between ``x1`` and ``x2``."""

    @property
    def has_amplitude(self) -> bool:
        """Whether the kernel carries an amplitude (of its own or of a part)."""
        return getattr(self, "amplitude", None) is not None

    def _value(self, name: str) -> Any:
        """The value of the hyperparameter ``name`` (a family may resolve it otherwise)."""
        return getattr(self, name)

    def _combine(self, other: Any, composite: type) -> Any:
        parts = [p for k in (self, other) for p in (k.parts if isinstance(k, composite) else (k,))]
        return composite(tuple(parts))

    def __add__(self, other: Any) -> Any:
        return self._combine(other, self.family[1])

    def __radd__(self, other: Any) -> Any:
        # sum([k1, k2]) starts from 0; any other left operand is not a kernel.
        return self if isinstance(other, int) and other == 0 else self + other

    def __mul__(self, other: Any) -> Any:
        return self._combine(other, self.family[2])

    __rmul__ = __mul__


class Declared(KernelAlgebra):
    """A kernel declared by its fields and its covariance function ``fn``: calling it returns
    ``fn(x1, x2, *values)``, the fields' values in declaration order (``amplitude=None``
    gives 1; no other field may be None). Shared by both families; not part of the API."""

    fn: ClassVar[Callable[..., Array]]

    def hyperparameter_names(self) -> tuple[str, ...]:
        """The fields passed to ``fn``, in order (every field that is not static)."""
        return tuple(f.name for f in dataclasses.fields(self) if not f.metadata.get("static"))

    def __call__(self, x1: ArrayLike, x2: ArrayLike) -> Array:
        values = (
            1.0 if name == "amplitude" and self.amplitude is None else self._value(name)
            for name in self.hyperparameter_names()
        )
        return type(self).fn(x1, x2, *values)


class Composite(KernelAlgebra):
    """The parts of a ``Sum`` or ``Product`` and their checks; shared by both families."""

    parts: tuple[Any, ...] = eqx.field(converter=tuple)
    op: ClassVar[Callable[[Array, Array], Array]]

    def __check_init__(self) -> None:
        kind, base = type(self).__name__, self.family[0]
        if len(self.parts) < 2:
            raise ValueError(f"{kind} needs at least two kernels; got {len(self.parts)}.")
        for i, part in enumerate(self.parts):
            if not isinstance(part, base):
                number = " (a number is not a kernel: scale a kernel by its amplitude)"
                raise TypeError(
                    f"{kind}: part {i} must be a kernel of {base.__module__}; got "
                    f"{type(part).__module__}.{type(part).__qualname__}"
                    f"{number if isinstance(part, (int, float)) else ''}. Build every part of a "
                    f"composite kernel from one family."
                )
        self._check_amplitudes()

    def _check_amplitudes(self) -> None:
        """Any part may carry an amplitude (a product overrides this)."""

    @property
    def has_amplitude(self) -> bool:
        return any(k.has_amplitude for k in self.parts)

    def __call__(self, x1: ArrayLike, x2: ArrayLike) -> Array:
        return functools.reduce(type(self).op, (k(x1, x2) for k in self.parts))


class SumOf(Composite):
    """``k(x, x') = k_1(x, x') + k_2(x, x') + ...``; shared by both families."""

    op = operator.add


class ProductOf(Composite):
    """``k(x, x') = k_1(x, x') k_2(x, x') ...``, where only the first factor may
    carry an amplitude; shared by both families."""

    op = operator.mul

    def _check_amplitudes(self) -> None:
        extra = [
            f"{i} ({type(f).__name__})" for i, f in enumerate(self.parts) if i and f.has_amplitude
        ]
        if extra:
            raise ValueError(
                f"Product: only the first factor may have an amplitude, but factor(s) "
                f"{', '.join(extra)} have one too; amplitudes multiply, so only their product "
                f"would be identified. Build the later factors with `amplitude=None`."
            )


class AbstractKernel(KernelAlgebra):
    """Base of the plain kernels: ``kernel(x1, x2)`` returns a Gram matrix."""


class _Plain(Declared, AbstractKernel):
    """A plain kernel: its hyperparameters are array leaves, checked positive when concrete,
    at construction and at each call (``eqx.tree_at`` can put any value in a leaf)."""

    def __check_init__(self) -> None:
        for name in self.hyperparameter_names():
            self._value(name)

    def _value(self, name: str) -> Any:
        value = getattr(self, name)
        if value is not None:
            check_positive(value, name)
        return value


class Stationary(_Plain):
    """A plain kernel of ``lengthscale`` and ``amplitude``; subclasses choose ``fn``."""

    lengthscale: Array = eqx.field(converter=as_float)
    amplitude: Array | None = eqx.field(converter=_optional)


class RBF(Stationary):
    """Plain RBF kernel module; see :func:`rbf`."""

    fn = staticmethod(rbf)


class Matern32(Stationary):
    """Plain Matérn 3/2 kernel module; see :func:`matern32`."""

    fn = staticmethod(matern32)


class Matern52(Stationary):
    """Plain Matérn 5/2 kernel module; see :func:`matern52`."""

    fn = staticmethod(matern52)


class Periodic(_Plain):
    """Plain periodic kernel module; see :func:`periodic`."""

    lengthscale: Array = eqx.field(converter=as_float)
    period: Array = eqx.field(converter=as_float)
    amplitude: Array | None = eqx.field(converter=_optional)
    fn = staticmethod(periodic)


class RationalQuadratic(_Plain):
    """Plain rational-quadratic kernel module of shape ``alpha``; see :func:`rational_quadratic`."""

    lengthscale: Array = eqx.field(converter=as_float)
    alpha: Array = eqx.field(converter=as_float)
    amplitude: Array | None = eqx.field(converter=_optional)
    fn = staticmethod(rational_quadratic)


class Sum(SumOf, AbstractKernel):
    """The sum of the plain kernels ``parts`` (at least two, nested sums flattened); usually
    built with ``+``."""


class Product(ProductOf, AbstractKernel):
    """The product of the plain kernels ``parts`` (at least two); usually built with ``*``. Only
    the first factor may carry an amplitude; build the others with ``amplitude=None``."""


AbstractKernel.family = (AbstractKernel, Sum, Product)
