"""Fixtures shared by the unit tests: the kernel table, seeded data, tolerances.

Every reference value the tests compare against is computed here or in the test
modules with NumPy, SciPy or scikit-learn, never with ``pyrox_lite`` itself.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.gaussian_process import kernels as sk  # noqa: E402

from pyrox_lite import gp, kernels  # noqa: E402

jax.config.update("jax_enable_x64", True)


def _rbf_profile(r: float) -> float:
    return math.exp(-0.5 * r * r)


def _matern32_profile(r: float) -> float:
    s = math.sqrt(3.0) * r
    return (1.0 + s) * math.exp(-s)


def _matern52_profile(r: float) -> float:
    s = math.sqrt(5.0) * r
    return (1.0 + s + s * s / 3.0) * math.exp(-s)


@dataclasses.dataclass(frozen=True)
class KernelCase:
    """One covariance function in all its forms, plus independent references."""

    name: str
    fn: Callable  # the pure function, fn(x1, x2, lengthscale, amplitude)
    module: type  # the plain Equinox module, module(lengthscale, amplitude)
    parameterized: type  # the Parameterized kernel of pyrox_lite.gp
    profile: Callable[[float], float]  # k(r) / amplitude**2 at scaled distance r
    sklearn: Callable[[float | np.ndarray], sk.Kernel]  # scikit-learn's kernel(length_scale)

    def pair(self, a: np.ndarray, b: np.ndarray, lengthscale, amplitude) -> float:
        """k(a, b) for two single inputs, straight from the closed form."""
        diff = (np.atleast_1d(a) - np.atleast_1d(b)) / np.asarray(lengthscale)
        return float(amplitude) ** 2 * self.profile(math.sqrt(float(np.sum(diff * diff))))

    def gram(self, x1: np.ndarray, x2: np.ndarray, lengthscale, amplitude) -> np.ndarray:
        """The Gram matrix built pair by pair with :meth:`pair`."""
        return np.array([[self.pair(a, b, lengthscale, amplitude) for b in x2] for a in x1])


KERNEL_CASES = (
    KernelCase("rbf", kernels.rbf, kernels.RBF, gp.RBF, _rbf_profile, lambda ell: sk.RBF(ell)),
    KernelCase(
        "matern32",
        kernels.matern32,
        kernels.Matern32,
        gp.Matern32,
        _matern32_profile,
        lambda ell: sk.Matern(ell, nu=1.5),
    ),
    KernelCase(
        "matern52",
        kernels.matern52,
        kernels.Matern52,
        gp.Matern52,
        _matern52_profile,
        lambda ell: sk.Matern(ell, nu=2.5),
    ),
)


@pytest.fixture(params=KERNEL_CASES, ids=[case.name for case in KERNEL_CASES])
def kernel_case(request) -> KernelCase:
    return request.param


@pytest.fixture
def rbf_case() -> KernelCase:
    return KERNEL_CASES[0]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240607)


def sinc_data(n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """The book's data set (DESIGN.md): noisy sin(x)/x, x uniform in [-10, 10] and sorted,
    noise sd 0.1, seed 0. Every notebook builds it with n = 100; other n give larger or
    smaller problems of the same kind."""
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-10.0, 10.0, n))
    y = np.sinc(x / np.pi) + 0.1 * rng.normal(size=n)
    return x, y


@pytest.fixture(scope="session")
def book_data() -> tuple[np.ndarray, np.ndarray]:
    """The book's data set, exactly as every notebook builds it."""
    return sinc_data()


@pytest.fixture(scope="session")
def book_data_of() -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """The book's data set with n points: ``book_data_of(n)``."""
    return sinc_data


@pytest.fixture(scope="session")
def small_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small 1-D problem (training x, y and test inputs) for compiled code paths."""
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(-3.0, 3.0, 12))
    y = np.sin(x) + 0.1 * rng.normal(size=12)
    x_test = np.linspace(-4.0, 4.0, 7)
    return x, y, x_test


@pytest.fixture(scope="session")
def two_feature_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small 2-D problem (training x, y and test inputs)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 2))
    y = np.sin(x[:, 0]) * np.cos(x[:, 1]) + 0.1 * rng.normal(size=20)
    return x, y, rng.normal(size=(6, 2))


@pytest.fixture(scope="session")
def tolerance() -> Callable[[np.dtype], float]:
    """Relative tolerance for a result of the given dtype: a few hundred ulps."""

    def tol(dtype) -> float:
        return 256 * float(np.finfo(np.dtype(dtype)).eps)

    return tol
