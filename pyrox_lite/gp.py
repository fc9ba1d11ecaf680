"""Native GP models built from :class:`~pyrox_lite.params.Parameterized` modules.

A kernel here declares its hyperparameters as :class:`~pyrox_lite.params.PyroxParam` fields;
:class:`ExactGP` wires a kernel, the noise and the observation site, so a NumPyro model is one
line::

    gp = ExactGP(RBF(lengthscale=PyroxParam(1.0, prior=dist.LogNormal(0.0, 1.0)), ...),
                 noise=PyroxParam(0.1, prior=dist.LogNormal(-2.0, 1.0)))

    def model(x, y=None):
        gp(x, y)

``k1 + k2`` is a :class:`Sum` and ``k1 * k2`` a :class:`Product`, which register the sites of
their parts and none of their own. Each part keeps its site names ``"{pyrox_name}.{field}"``,
so two parts of one class need distinct ``pyrox_name``; a clash is reported when the composite
is built. The math, the sums and products and the call are those of
:mod:`pyrox_lite.kernels` (including ``amplitude=None``): one implementation serves both
families.
"""

from __future__ import annotations

import equinox as eqx
import numpyro
from jax import Array
from jax.typing import ArrayLike
from numpyro.distributions import constraints

from . import kernels
from ._checks import check_data
from .kernels import CLASSES, Declared, KernelAlgebra, ProductOf, SumOf
from .latent import LatentGP, LatentPrediction, predict_latent, unwhiten, whiten
from .likelihood import JITTER, GPMarginal, GPPrediction, predict
from .params import Parameterized, PyroxParam, param_field, pyrox_method, require_handler

__all__ = ["AbstractKernel", "Kernel", *CLASSES, "Sum", "Product", "ExactGP"]
__all__ += ["LatentGP", "LatentPrediction", "predict_latent", "whiten", "unwhiten"]  # re-exported


class AbstractKernel(Parameterized, KernelAlgebra):
    """Base of the ``Parameterized`` kernels: ``kernel(x1, x2)`` registers the kernel's sites
    and returns a Gram matrix. Each hyperparameter below defaults to a learnable positive
    parameter initialised at 1; pass ``PyroxParam(init, prior=...)`` to make it a random
    variable, or ``amplitude=None`` for a kernel without an amplitude."""

    def _value(self, name: str) -> Array:
        return self.get_param(name)


class Kernel(Declared, AbstractKernel):
    """A stationary kernel with ``lengthscale`` and ``amplitude``; subclasses choose the
    covariance function ``fn(x1, x2, lengthscale, amplitude)``."""

    lengthscale: PyroxParam = param_field(1.0, domain=constraints.positive)
    amplitude: PyroxParam = param_field(1.0, domain=constraints.positive)


class RBF(Kernel):
    """RBF kernel; see :func:`pyrox_lite.kernels.rbf`."""

    fn = staticmethod(kernels.rbf)


class Matern32(Kernel):
    """Matérn 3/2 kernel; see :func:`pyrox_lite.kernels.matern32`."""

    fn = staticmethod(kernels.matern32)


class Matern52(Kernel):
    """Matérn 5/2 kernel; see :func:`pyrox_lite.kernels.matern52`."""

    fn = staticmethod(kernels.matern52)


class Periodic(Declared, AbstractKernel):
    """Periodic kernel; see :func:`pyrox_lite.kernels.periodic`."""

    lengthscale: PyroxParam = param_field(1.0, domain=constraints.positive)
    period: PyroxParam = param_field(1.0, domain=constraints.positive)
    amplitude: PyroxParam = param_field(1.0, domain=constraints.positive)
    fn = staticmethod(kernels.periodic)


class RationalQuadratic(Declared, AbstractKernel):
    """Rational-quadratic kernel; see :func:`pyrox_lite.kernels.rational_quadratic`."""

    lengthscale: PyroxParam = param_field(1.0, domain=constraints.positive)
    alpha: PyroxParam = param_field(1.0, domain=constraints.positive)
    amplitude: PyroxParam = param_field(1.0, domain=constraints.positive)
    fn = staticmethod(kernels.rational_quadratic)


class Sum(SumOf, AbstractKernel):
    """The sum of the kernels ``parts`` (at least two, nested sums flattened); usually built
    with ``+``. Calling it calls every term, which registers the term's own sites."""


class Product(ProductOf, AbstractKernel):
    """The product of the kernels ``parts`` (at least two); usually built with ``*``. Only the
    first factor may carry an amplitude; build the others with ``amplitude=None``."""


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
        if y is None:
            require_handler(f"{type(self).__name__}(x) without y")
        marginal = GPMarginal(self.kernel(x, x), self.get_param("noise"), self.jitter)
        return numpyro.sample(self.obs_site, marginal, obs=y)

    @pyrox_method
    def predict(self, x: ArrayLike, y: ArrayLike, x_test: ArrayLike) -> GPPrediction:
        """Predictive moments at ``x_test`` given the training data, at the current
        hyperparameter values (sites, or init values outside NumPyro)."""
        return predict(self.kernel, x, y, x_test, self.get_param("noise"), self.jitter)
