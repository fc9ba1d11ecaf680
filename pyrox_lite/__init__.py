"""pyrox_lite: the support package of the pyrox-lite book.

Kernels (:mod:`pyrox_lite.kernels`), the GP marginal likelihood and predictive
(:mod:`pyrox_lite.likelihood`), the parameter machinery
(:mod:`pyrox_lite.params`) and native GP models (:mod:`pyrox_lite.gp`).
Enable float64 before use: ``jax.config.update("jax_enable_x64", True)``.
"""

from . import gp, kernels, sparse
from .kernels import (
    RBF,
    Matern32,
    Matern52,
    Periodic,
    RationalQuadratic,
    matern32,
    matern52,
    periodic,
    rational_quadratic,
    rbf,
)
from .likelihood import JITTER, GPMarginal, GPPrediction, gp_log_marginal, predict
from .params import Parameterized, PyroxModule, PyroxParam, one_call, param_field, pyrox_method

__version__ = "0.1.0"

__all__ = [
    "gp",
    "kernels",
    "sparse",
    "rbf",
    "matern32",
    "matern52",
    "periodic",
    "rational_quadratic",
    "RBF",
    "Matern32",
    "Matern52",
    "Periodic",
    "RationalQuadratic",
    "JITTER",
    "gp_log_marginal",
    "GPMarginal",
    "GPPrediction",
    "predict",
    "PyroxModule",
    "pyrox_method",
    "one_call",
    "PyroxParam",
    "Parameterized",
    "param_field",
]
