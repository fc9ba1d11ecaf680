"""Native GP models built from :class:`~pyrox_lite.params.Parameterized` modules.

A kernel here declares its hyperparameters as :class:`~pyrox_lite.params.PyroxParam`
fields; :class:`ExactGP` wires a kernel, the noise and the observation site so a
NumPyro model is one line::

    gp = ExactGP(RBF(lengthscale=PyroxParam(1.0, prior=dist.LogNormal(0.0, 1.0)), ...),
                 noise=PyroxParam(0.1, prior=dist.LogNormal(-2.0, 1.0)))

    def model(x, y=None):
        gp(x, y)

Kernels combine: ``k1 + k2`` is a :class:`Sum` and ``k1 * k2`` a :class:`Product`,
``Parameterized`` kernels again, which register the sites of their parts and no
site of their own. Each part keeps its site names ``"{pyrox_name}.{field}"``
(scope: its ``pyrox_name``, or its lower-cased class name), so two parts of one
class need distinct ``pyrox_name``; a clash is reported when the composite is
built. ``amplitude=None`` builds a kernel without an amplitude; in a product
only the first factor may have one (see :mod:`pyrox_lite.kernels`). The sums,
products and the call of a kernel are those of :mod:`pyrox_lite.kernels`: one
implementation serves both families.
"""

from __future__ import annotations

import equinox as eqx
import numpyro
from jax import Array
from jax.typing import ArrayLike
from numpyro.distributions import constraints

from ._checks import check_data
from .kernels import (
    Declared,
    KernelAlgebra,
    ProductOf,
    SumOf,
    matern32,
    matern52,
    periodic,
    rational_quadratic,
    rbf,
)
from .likelihood import JITTER, GPMarginal, GPPrediction, predict
from .params import (
    Parameterized,
    PyroxParam,
    _inside_handler,
    needs_handler,
    param_field,
    pyrox_method,
)

__all__ = [
    "AbstractKernel",
    "Kernel",
    "RBF",
    "Matern32",
    "Matern52",
    "Periodic",
    "RationalQuadratic",
    "Sum",
    "Product",
    "ExactGP",
    "LatentGP",
    "LatentPrediction",
    "predict_latent",
    "whiten",
    "unwhiten",
]


class AbstractKernel(Parameterized, KernelAlgebra):
    """Base of the ``Parameterized`` kernels: ``kernel(x1, x2)`` registers the kernel's
    sites and returns a Gram matrix; ``k1 + k2`` and ``k1 * k2`` return a :class:`Sum`
    and a :class:`Product`.

    Every hyperparameter of the kernels below defaults to a learnable positive
    parameter initialised at 1; pass ``PyroxParam(init, prior=...)`` to make it a
    random variable, or ``amplitude=None`` for a kernel without an amplitude (a
    factor of a product).
    """

    def _value(self, name: str) -> Array:
        return self.get_param(name)


class Kernel(Declared, AbstractKernel):
    """A stationary kernel with ``lengthscale`` and ``amplitude`` parameters; subclasses
    choose the covariance function ``fn(x1, x2, lengthscale, amplitude)``."""

    lengthscale: PyroxParam = param_field(1.0, domain=constraints.positive)
    amplitude: PyroxParam = param_field(1.0, domain=constraints.positive)


class RBF(Kernel):
    """RBF kernel with ``PyroxParam`` hyperparameters (sites ``rbf.lengthscale`` and
    ``rbf.amplitude`` by default); the math is :func:`pyrox_lite.kernels.rbf`."""

    fn = staticmethod(rbf)


class Matern32(Kernel):
    """Matérn 3/2 kernel with ``PyroxParam`` hyperparameters (sites ``matern32.lengthscale`` and
    ``matern32.amplitude`` by default); the math is :func:`pyrox_lite.kernels.matern32`."""

    fn = staticmethod(matern32)


class Matern52(Kernel):
    """Matérn 5/2 kernel with ``PyroxParam`` hyperparameters (sites ``matern52.lengthscale`` and
    ``matern52.amplitude`` by default); the math is :func:`pyrox_lite.kernels.matern52`."""

    fn = staticmethod(matern52)


class Periodic(Declared, AbstractKernel):
    """Periodic kernel with ``PyroxParam`` hyperparameters; see :func:`pyrox_lite.kernels.periodic`."""

    lengthscale: PyroxParam = param_field(1.0, domain=constraints.positive)
    period: PyroxParam = param_field(1.0, domain=constraints.positive)
    amplitude: PyroxParam = param_field(1.0, domain=constraints.positive)
    fn = staticmethod(periodic)


class RationalQuadratic(Declared, AbstractKernel):
    """Rational-quadratic kernel with ``PyroxParam`` hyperparameters and shape ``alpha``;
    see :func:`pyrox_lite.kernels.rational_quadratic`."""

    lengthscale: PyroxParam = param_field(1.0, domain=constraints.positive)
    alpha: PyroxParam = param_field(1.0, domain=constraints.positive)
    amplitude: PyroxParam = param_field(1.0, domain=constraints.positive)
    fn = staticmethod(rational_quadratic)


class Sum(SumOf, AbstractKernel):
    """The sum of ``Parameterized`` kernels, usually built with ``+``.

    ``parts`` is the tuple of terms (at least two; nested sums are flattened).
    Calling it calls every term, which registers the term's own sites; it has no
    site of its own.
    """


class Product(ProductOf, AbstractKernel):
    """The product of ``Parameterized`` kernels, usually built with ``*``.

    ``parts`` is the tuple of factors (at least two). Only the first factor may
    carry an amplitude; build the others with ``amplitude=None``.
    """


AbstractKernel.family = (AbstractKernel, Sum, Product)


class ExactGP(Parameterized):
    """Exact GP regression: a kernel, Gaussian noise and the observation site.

    Attributes:
        kernel: a ``Parameterized`` kernel such as :class:`RBF`, or a sum or product of them.
        noise: the noise standard deviation.
        obs_site: name of the observation site.
        jitter: added to the diagonal of the training covariance.
    """

    kernel: AbstractKernel
    noise: PyroxParam = param_field(0.1, domain=constraints.positive)
    obs_site: str = eqx.field(default="y", static=True)
    jitter: float = eqx.field(default=JITTER, static=True)

    @pyrox_method
    def __call__(self, x: ArrayLike, y: ArrayLike | None = None) -> Array:
        """Register the hyperparameters and the observation ``y ~ GPMarginal``; returns ``y``
        (a prior draw when ``y`` is None)."""
        x, y = check_data(x, y)
        if y is None and not _inside_handler():
            raise RuntimeError(needs_handler(f"{type(self).__name__}(x) without y"))
        marginal = GPMarginal(self.kernel(x, x), self.get_param("noise"), self.jitter)
        return numpyro.sample(self.obs_site, marginal, obs=y)

    @pyrox_method
    def predict(self, x: ArrayLike, y: ArrayLike, x_test: ArrayLike) -> GPPrediction:
        """Predictive moments at ``x_test`` given the training data, at the current
        hyperparameter values (sites, or init values outside NumPyro)."""
        return predict(self.kernel, x, y, x_test, self.get_param("noise"), self.jitter)


# The latent GP builds on the modules above, so it is imported last.
from .latent import LatentGP, LatentPrediction, predict_latent, unwhiten, whiten  # noqa: E402
