"""Input validation shared by the package. Checks on values run only when the
values are concrete (eagerly, before any NUTS run); under ``jit`` they are
skipped, because a traced value cannot be inspected without a runtime cost."""

from __future__ import annotations

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


def check_data(
    x: ArrayLike, y: ArrayLike | None = None, *, x_name: str = "x"
) -> tuple[Array, Array | None]:
    """Validate data: ``x`` of shape ``(N,)`` or ``(N, D)``, ``y`` of shape ``(N,)``.
    ``x_name`` is the name errors give ``x`` (for example ``"x_test"``)."""
    x = as_float(x)
    if x.ndim not in (1, 2):
        raise ValueError(f"`{x_name}` must have shape (N,) or (N, D); got shape {x.shape}.")
    check_finite(x, x_name)
    if y is None:
        return x, None
    y = as_float(y)
    if y.ndim != 1:
        raise ValueError(f"`y` must have shape (N,); got shape {y.shape}.")
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"`x` and `y` must have the same length; got {x.shape[0]} inputs and {y.shape[0]} targets."
        )
    check_finite(y, "y")
    return x, y


def check_same_features(x: Array, x_test: Array) -> None:
    """Raise unless ``x`` and ``x_test`` have the same number of features (``(N,)`` counts as one)."""
    d, d_test = (1 if a.ndim == 1 else a.shape[1] for a in (x, x_test))
    if d != d_test:
        raise ValueError(
            f"`x_test` must have the same number of features as `x`; got {d_test} and {d}."
        )
