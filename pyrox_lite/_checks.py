"""Input validation shared by the package. Checks on values run only when the values are
concrete (eagerly, before any NUTS run): a traced value cannot be inspected without a runtime
cost. Checks on shapes and dtypes, known while tracing, add nothing to a compiled program."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike


def as_float(x: ArrayLike) -> Array:
    """``x`` as a JAX array of the default float dtype (float64 under x64)."""
    return jnp.asarray(x, dtype=jnp.result_type(float))


def concrete(x: ArrayLike) -> np.ndarray | None:
    """``x`` as a NumPy array, or ``None`` if it is a tracer (inside ``jit``/``grad``)."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def check_finite(x: ArrayLike, name: str) -> None:
    value = concrete(x)
    if value is not None and not np.all(np.isfinite(value)):
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        raise ValueError(f"`{name}` contains {bad} NaN or infinite value(s); clean the data first.")


def check_positive(x: ArrayLike, name: str) -> None:
    value = concrete(x)
    if value is not None and not np.all(value > 0):
        raise ValueError(f"`{name}` must be positive; got {value}.")


X64_FIX = 'jax.config.update("jax_enable_x64", True)'


def check_precision(x: Array, name: str) -> None:
    """Warn when ``x`` is in less than double precision. Not an error: a small, well-conditioned
    GP works in float32; where the Cholesky factorisation fails, :func:`check_factorised` raises."""
    if jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits < 64:
        warnings.warn(
            f"`{name}` is {x.dtype}: float64 is not enabled. The Cholesky factorisation of a GP "
            f"covariance often fails in single precision (the log density becomes NaN). Call "
            f"{X64_FIX} before creating any array.",
            UserWarning,
            stacklevel=3,
        )


def check_factorised(result: Array, cov: Array, what: str, y: Array | None = None) -> None:
    """Raise if an eager ``result`` computed from the Cholesky factor of ``cov`` (and from ``y``)
    is not finite, saying why: NaN in ``y``, else a failed factorisation (a covariance that is not
    positive definite at the working precision fills its factor with NaN). Under ``jit`` or
    ``grad`` nothing is checked."""
    value = concrete(result)
    if value is None or np.all(np.isfinite(value)):
        return
    if y is not None:
        check_finite(y, "y")
    c = concrete(cov)
    if c is not None and not np.all(np.isfinite(c)):
        check_finite(c, "cov")  # the covariance itself holds NaN: say that instead
    n = cov.shape[-1]
    detail = ""
    if c is not None:
        # Only on failure: the spectrum says how far from positive definite the matrix is.
        eig = np.linalg.eigvalsh(np.asarray(c, dtype=np.float64).reshape(-1, n, n))
        worst = eig[:, 0] / np.max(np.abs(eig), axis=-1)
        detail = f" Its smallest eigenvalue relative to its largest is {np.min(worst):.1e}."
    low = jnp.finfo(cov.dtype).bits < 64
    precision = (
        f"the covariance is {cov.dtype}: enable float64 with {X64_FIX} before creating any array"
        if low
        else f"a near-singular covariance still fails in float64 ({X64_FIX} is on)"
    )
    raise np.linalg.LinAlgError(
        f"{what}: the Cholesky factorisation of the {n} x {n} covariance failed (it is not "
        f"positive definite at {cov.dtype} precision), so the result is NaN.{detail} Likely "
        f"causes: (1) precision: {precision}; (2) jitter: the covariance is nearly singular, as "
        f"when the lengthscale is long compared with the spacing of the inputs and the noise is "
        f"tiny; raise the noise or the jitter; (3) scale of the data: standardise x and y (zero "
        f"mean, unit variance) so that the hyperparameters are of order one."
    )


def check_not_empty(n: int, what: str) -> None:
    """Raise if there are no data points."""
    if n == 0:
        raise ValueError(
            f"{what} holds no data points (N = 0); a GP needs at least one observation."
        )


def check_data(
    x: ArrayLike, y: ArrayLike | None = None, *, x_name: str = "x", allow_empty: bool = False
) -> tuple[Array, Array | None]:
    """Validate data: ``x`` of shape ``(N,)`` or ``(N, D)``, ``y`` of shape ``(N,)``.
    ``x_name`` is the name errors give ``x`` (for example ``"x_test"``); N >= 1
    unless ``allow_empty`` (test inputs may be empty)."""
    x = as_float(x)
    if x.ndim not in (1, 2):
        raise ValueError(f"`{x_name}` must have shape (N,) or (N, D); got shape {x.shape}.")
    if x.ndim == 2 and x.shape[1] == 0:
        raise ValueError(f"`{x_name}` has shape {x.shape}: no features; give at least one column.")
    if not allow_empty:
        check_not_empty(x.shape[0], f"`{x_name}`")
    check_precision(x, x_name)
    check_finite(x, x_name)
    if y is None:
        return x, None
    y = as_float(y)
    if y.ndim != 1:
        raise ValueError(f"`y` must have shape (N,); got shape {y.shape}.")
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"`{x_name}` and `y` must have the same length; got {x.shape[0]} inputs and "
            f"{y.shape[0]} targets."
        )
    check_finite(y, "y")
    return x, y


def check_same_features(x: Array, x_test: Array) -> None:
    """Raise unless ``x`` and ``x_test`` have as many features (``(N,)`` counts as one)."""
    d, d_test = (1 if a.ndim == 1 else a.shape[1] for a in (x, x_test))
    if d != d_test:
        raise ValueError(
            f"`x_test` must have the same number of features as `x`; got {d_test} and {d}."
        )
