"""Stationary covariance functions and their sums and products.

Each kernel's math lives in exactly one pure function (:func:`rbf`,
:func:`matern32`, :func:`matern52`, :func:`periodic`,
:func:`rational_quadratic`) that maps two sets of inputs and the
hyperparameters to a Gram matrix. The plain :class:`equinox.Module` kernels
below (:class:`RBF`, :class:`Matern32`, :class:`Matern52`, :class:`Periodic`,
:class:`RationalQuadratic`) hold the hyperparameters as array leaves and call
those functions; the ``Parameterized`` kernels of :mod:`pyrox_lite.gp` call the
very same functions.

Inputs may have shape ``(N,)`` (one feature) or ``(N, D)``. The lengthscale of
the RBF, Matérn and rational-quadratic kernels is a scalar or a length-``D``
vector (one lengthscale per feature); the periodic kernel takes scalars.

Kernels of one family combine: ``k1 + k2`` is a :class:`Sum`, ``k1 * k2`` a
:class:`Product`, both kernels of the same family again. Any kernel may be built
with ``amplitude=None``, which means no amplitude at all (a unit variance). In a
product only the first factor may carry an amplitude: the product of two
amplitudes is one number, and two parameters whose product is all the data can
see are not identified.
"""

from __future__ import annotations

import abc
import functools
import math
import operator
from typing import Any, Callable, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from ._checks import as_float, check_positive

KernelFn = Callable[[ArrayLike, ArrayLike, ArrayLike, ArrayLike], Array]

__all__ = [
    "rbf",
    "matern32",
    "matern52",
    "periodic",
    "rational_quadratic",
    "AbstractKernel",
    "Stationary",
    "RBF",
    "Matern32",
    "Matern52",
    "Periodic",
    "RationalQuadratic",
    "Sum",
    "Product",
]


def _as_2d(x: ArrayLike, name: str) -> Array:
    x = as_float(x)
    if x.ndim == 1:
        return x[:, None]
    if x.ndim == 2:
        return x
    raise ValueError(f"`{name}` must have shape (N,) or (N, D); got shape {x.shape}.")


def _pair(x1: ArrayLike, x2: ArrayLike) -> tuple[Array, Array]:
    """Both sets of inputs as ``(N, D)`` arrays with the same number of features."""
    a = _as_2d(x1, "x1")
    # One array when both sides are the same inputs (a Gram matrix): the traced program
    # is then the same whether or not the caller converted x to a JAX array first.
    b = a if x2 is x1 else _as_2d(x2, "x2")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"`x1` and `x2` must have the same number of features; got {a.shape[1]} and {b.shape[1]}."
        )
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


def periodic(
    x1: ArrayLike, x2: ArrayLike, lengthscale: ArrayLike, period: ArrayLike, amplitude: ArrayLike
) -> Array:
    r"""Periodic (exp-sine-squared) kernel, with :math:`d = \lVert x - x' \rVert` the
    Euclidean distance.

    .. math:: k(x, x') = \alpha^2 \exp\!\left(-\frac{2 \sin^2(\pi d / p)}{\ell^2}\right)

    A function drawn with this kernel repeats exactly every :math:`p`; the lengthscale
    :math:`\ell` sets how wiggly one period is, in units of the sine (as in
    scikit-learn's ``ExpSineSquared``).

    Args:
        x1: inputs, shape ``(N1,)`` or ``(N1, D)``.
        x2: inputs, shape ``(N2,)`` or ``(N2, D)``.
        lengthscale: :math:`\ell > 0`, a scalar.
        period: :math:`p > 0`, a scalar in the units of the inputs.
        amplitude: :math:`\alpha > 0`, the signal standard deviation.

    Returns:
        The Gram matrix, shape ``(N1, N2)``.
    """
    a, b = _pair(x1, x2)
    ell, p = _scalar(lengthscale, "lengthscale"), _scalar(period, "period")
    if a.shape[1] == 1:
        # One feature: sin^2 is even, so the signed difference serves as the distance, and
        # sin(u - v) = sin u cos v - cos u sin v needs sines and cosines of the N1 + N2
        # inputs only, not of the N1 * N2 differences (a sine costs ten times an exp on CPU).
        u, v = math.pi * a[:, 0] / p, math.pi * b[:, 0] / p
        s = jnp.outer(jnp.sin(u), jnp.cos(v)) - jnp.outer(jnp.cos(u), jnp.sin(v))
    else:
        s = jnp.sin(math.pi * _safe_sqrt(jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)) / p)
    return as_float(amplitude) ** 2 * jnp.exp(-2.0 * (s / ell) ** 2)


def rational_quadratic(
    x1: ArrayLike, x2: ArrayLike, lengthscale: ArrayLike, alpha: ArrayLike, amplitude: ArrayLike
) -> Array:
    r"""Rational-quadratic kernel, with :math:`r = |x - x'| / \ell` and shape
    :math:`\alpha_{\mathrm{RQ}}` (the argument ``alpha``).

    .. math:: k(x, x') = \alpha^2 \left(1 + \frac{r^2}{2 \alpha_{\mathrm{RQ}}}\right)^{-\alpha_{\mathrm{RQ}}}

    A scale mixture of RBF kernels whose inverse squared lengthscales are gamma
    distributed: small :math:`\alpha_{\mathrm{RQ}}` mixes many lengthscales, and as
    :math:`\alpha_{\mathrm{RQ}} \to \infty` the kernel becomes :func:`rbf`.

    Args:
        x1, x2: inputs, as for :func:`rbf`.
        lengthscale: :math:`\ell > 0`, scalar or shape ``(D,)``.
        alpha: :math:`\alpha_{\mathrm{RQ}} > 0`, a scalar.
        amplitude: :math:`\alpha > 0`, the signal standard deviation.

    Returns:
        The Gram matrix, shape ``(N1, N2)``.
    """
    shape = _scalar(alpha, "alpha")
    r2 = scaled_sqdist(x1, x2, lengthscale)
    return as_float(amplitude) ** 2 * jnp.exp(-shape * jnp.log1p(r2 / (2.0 * shape)))


def _optional(value: ArrayLike | None) -> Array | None:
    return None if value is None else as_float(value)


def _unit_or(amplitude: Array | None) -> Array | float:
    return 1.0 if amplitude is None else amplitude


def _check_positive_fields(module: Any, *names: str) -> None:
    for name in names:
        value = getattr(module, name)
        if value is not None:
            check_positive(value, name)


def _qualname(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def combine(a: Any, b: Any, base: type, composite: type) -> Any:
    """``a + b`` or ``a * b`` for one family of kernels.

    ``base`` is the family's base class and ``composite`` its ``Sum`` or ``Product``.
    Nested composites of the same kind are flattened, so ``k1 + k2 + k3`` has three
    terms, not a sum inside a sum. Shared by both families; not part of the API.
    """
    if not isinstance(b, base):
        family = base.__module__
        raise TypeError(
            f"A kernel of {family} can only be combined with another kernel of {family}; "
            f"got {_qualname(b)}. Build every part of a composite kernel from one family."
        )
    parts: list[Any] = []
    for k in (a, b):
        parts.extend(k.parts if isinstance(k, composite) else (k,))
    return composite(tuple(parts))


def check_composite(composite: Any, base: type) -> None:
    """Validate the parts of a ``Sum`` or ``Product``; the amplitude rule for products."""
    kind = type(composite).__name__
    parts = composite.parts
    if len(parts) < 2:
        raise ValueError(f"{kind} needs at least two kernels; got {len(parts)}.")
    for i, part in enumerate(parts):
        if not isinstance(part, base):
            raise TypeError(
                f"{kind}: part {i} must be a kernel of {base.__module__}; got {_qualname(part)}."
            )
    if kind == "Product":
        extra = [f"{i} ({type(f).__name__})" for i, f in enumerate(parts) if i > 0 and f.has_amplitude]
        if extra:
            raise ValueError(
                f"Product: only the first factor may have an amplitude, but factor(s) "
                f"{', '.join(extra)} have one too; amplitudes multiply, so only their product "
                f"would be identified. Build the later factors with `amplitude=None`."
            )


class AbstractKernel(eqx.Module):
    """Base of the plain kernels: ``kernel(x1, x2)`` returns a Gram matrix, and
    ``k1 + k2`` and ``k1 * k2`` return a :class:`Sum` and a :class:`Product`."""

    @abc.abstractmethod
    def __call__(self, x1: ArrayLike, x2: ArrayLike) -> Array:
        """The Gram matrix between ``x1`` and ``x2``."""

    @property
    def has_amplitude(self) -> bool:
        """Whether the kernel carries an amplitude (of its own or of a part)."""
        return getattr(self, "amplitude", None) is not None

    def __add__(self, other: AbstractKernel) -> Sum:
        return combine(self, other, AbstractKernel, Sum)

    def __mul__(self, other: AbstractKernel) -> Product:
        return combine(self, other, AbstractKernel, Product)


class Stationary(AbstractKernel):
    """A plain Equinox kernel: the hyperparameters are ordinary array leaves.

    Subclasses only choose the covariance function ``fn``. Calling the module
    returns the Gram matrix ``fn(x1, x2, lengthscale, amplitude)``;
    ``amplitude=None`` means a unit amplitude that is not a parameter.
    """

    lengthscale: Array = eqx.field(converter=as_float)
    amplitude: Array | None = eqx.field(converter=_optional)
    fn: ClassVar[KernelFn]

    def __check_init__(self) -> None:
        _check_positive_fields(self, "lengthscale", "amplitude")

    def __call__(self, x1: ArrayLike, x2: ArrayLike) -> Array:
        return type(self).fn(x1, x2, self.lengthscale, _unit_or(self.amplitude))


class RBF(Stationary):
    """Plain RBF kernel module; see :func:`rbf`."""

    fn = staticmethod(rbf)


class Matern32(Stationary):
    """Plain Matérn 3/2 kernel module; see :func:`matern32`."""

    fn = staticmethod(matern32)


class Matern52(Stationary):
    """Plain Matérn 5/2 kernel module; see :func:`matern52`."""

    fn = staticmethod(matern52)


class Periodic(AbstractKernel):
    """Plain periodic kernel module; see :func:`periodic`."""

    lengthscale: Array = eqx.field(converter=as_float)
    period: Array = eqx.field(converter=as_float)
    amplitude: Array | None = eqx.field(converter=_optional)

    def __check_init__(self) -> None:
        _check_positive_fields(self, "lengthscale", "period", "amplitude")

    def __call__(self, x1: ArrayLike, x2: ArrayLike) -> Array:
        return periodic(x1, x2, self.lengthscale, self.period, _unit_or(self.amplitude))


class RationalQuadratic(AbstractKernel):
    """Plain rational-quadratic kernel module; see :func:`rational_quadratic`."""

    lengthscale: Array = eqx.field(converter=as_float)
    alpha: Array = eqx.field(converter=as_float)
    amplitude: Array | None = eqx.field(converter=_optional)

    def __check_init__(self) -> None:
        _check_positive_fields(self, "lengthscale", "alpha", "amplitude")

    def __call__(self, x1: ArrayLike, x2: ArrayLike) -> Array:
        return rational_quadratic(x1, x2, self.lengthscale, self.alpha, _unit_or(self.amplitude))


class Sum(AbstractKernel):
    """The sum of plain kernels: ``k(x, x') = k_1(x, x') + k_2(x, x') + ...``.

    Usually built with ``+``; ``parts`` is the tuple of terms (at least two), each a
    plain kernel, with nested sums flattened into one.
    """

    parts: tuple[AbstractKernel, ...] = eqx.field(converter=tuple)

    def __check_init__(self) -> None:
        check_composite(self, AbstractKernel)

    @property
    def has_amplitude(self) -> bool:
        return any(k.has_amplitude for k in self.parts)

    def __call__(self, x1: ArrayLike, x2: ArrayLike) -> Array:
        return functools.reduce(operator.add, (k(x1, x2) for k in self.parts))


class Product(AbstractKernel):
    """The product of plain kernels: ``k(x, x') = k_1(x, x') k_2(x, x') ...``.

    Usually built with ``*``; ``parts`` is the tuple of factors (at least two). Only
    the first factor may carry an amplitude; build the others with ``amplitude=None``.
    """

    parts: tuple[AbstractKernel, ...] = eqx.field(converter=tuple)

    def __check_init__(self) -> None:
        check_composite(self, AbstractKernel)

    @property
    def has_amplitude(self) -> bool:
        return any(k.has_amplitude for k in self.parts)

    def __call__(self, x1: ArrayLike, x2: ArrayLike) -> Array:
        return functools.reduce(operator.mul, (k(x1, x2) for k in self.parts))
