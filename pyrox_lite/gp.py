"""Native GP models built from :class:`~pyrox_lite.params.Parameterized` modules.

A kernel here declares its hyperparameters as :class:`~pyrox_lite.params.PyroxParam`
fields; :class:`ExactGP` wires a kernel, the noise and the observation site so a
NumPyro model is one line::

    gp = ExactGP(RBF(lengthscale=PyroxParam(1.0, prior=dist.LogNormal(0.0, 1.0)), ...),
                 noise=PyroxParam(0.1, prior=dist.LogNormal(-2.0, 1.0)))

    def model(x, y=None):
        gp(x, y)
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import numpyro
from jax import Array
from jax.typing import ArrayLike
from numpyro.distributions import constraints

from ._checks import check_data
from .kernels import KernelFn, matern32, matern52, rbf
from .likelihood import JITTER, GPMarginal, GPPrediction, predict
from .params import Parameterized, PyroxParam, param_field, pyrox_method

__all__ = ["Kernel", "RBF", "Matern32", "Matern52", "ExactGP"]


def _positive() -> PyroxParam:
    return PyroxParam(1.0, constraint=constraints.positive)


class Kernel(Parameterized):
    """A stationary kernel with ``lengthscale`` and ``amplitude`` parameters.

    Each defaults to a learnable positive ``numpyro.param`` initialised at 1;
    pass ``PyroxParam(init, prior=...)`` to make it a random variable.
    """

    lengthscale: PyroxParam = param_field(1.0, domain=constraints.positive)
    amplitude: PyroxParam = param_field(1.0, domain=constraints.positive)
    fn: ClassVar[KernelFn]

    @pyrox_method
    def __call__(self, x1: ArrayLike, x2: ArrayLike) -> Array:
        return type(self).fn(x1, x2, self.get_param("lengthscale"), self.get_param("amplitude"))


class RBF(Kernel):
    """RBF kernel with ``PyroxParam`` hyperparameters; the math is :func:`pyrox_lite.kernels.rbf`."""

    fn = staticmethod(rbf)


class Matern32(Kernel):
    """Matérn 3/2 kernel with ``PyroxParam`` hyperparameters; see :func:`pyrox_lite.kernels.matern32`."""

    fn = staticmethod(matern32)


class Matern52(Kernel):
    """Matérn 5/2 kernel with ``PyroxParam`` hyperparameters; see :func:`pyrox_lite.kernels.matern52`."""

    fn = staticmethod(matern52)


class ExactGP(Parameterized):
    """Exact GP regression: a kernel, Gaussian noise and the observation site.

    Attributes:
        kernel: a ``Parameterized`` kernel such as :class:`RBF`.
        noise: the noise standard deviation.
        obs_site: name of the observation site.
        jitter: added to the diagonal of the training covariance.
    """

    kernel: Kernel
    noise: PyroxParam = param_field(0.1, domain=constraints.positive)
    obs_site: str = eqx.field(default="y", static=True)
    jitter: float = eqx.field(default=JITTER, static=True)

    @pyrox_method
    def __call__(self, x: ArrayLike, y: ArrayLike | None = None) -> Array:
        """Register the hyperparameters and the observation ``y ~ GPMarginal``; returns ``y``
        (a prior draw when ``y`` is None)."""
        x, y = check_data(x, y)
        marginal = GPMarginal(self.kernel(x, x), self.get_param("noise"), self.jitter)
        return numpyro.sample(self.obs_site, marginal, obs=y)

    @pyrox_method
    def predict(self, x: ArrayLike, y: ArrayLike, x_test: ArrayLike) -> GPPrediction:
        """Predictive moments at ``x_test`` given the training data, at the current
        hyperparameter values (sites, or init values outside NumPyro)."""
        return predict(self.kernel, x, y, x_test, self.get_param("noise"), self.jitter)
