"""Kernels: closed forms, the three forms of each kernel, Gram-matrix properties,
dtypes, and modules passed through JAX transformations."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.gaussian_process.kernels import ConstantKernel

from pyrox_lite import PyroxParam

jax.config.update("jax_enable_x64", True)


def assert_matches_closed_form(gram_fn, case, x1, x2, lengthscale, amplitude, rtol):
    """``gram_fn(x1, x2, lengthscale, amplitude)`` against the per-pair closed form of ``case``."""
    got = np.asarray(gram_fn(x1, x2, lengthscale, amplitude))
    want = case.gram(x1, x2, lengthscale, amplitude)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * amplitude**2)


def the_three_forms(case):
    """The pure function, the plain module and the Parameterized kernel (called
    outside any NumPyro handler, so it uses its init values), all as fn(x1, x2, ell, amp)."""
    return {
        "function": case.fn,
        "module": lambda x1, x2, ell, amp: case.module(ell, amp)(x1, x2),
        "parameterized": lambda x1, x2, ell, amp: case.parameterized(
            lengthscale=PyroxParam(ell), amplitude=PyroxParam(amp)
        )(x1, x2),
    }


INPUTS = {
    # name: (x1 shape, x2 shape, lengthscale)
    "1d-scalar-ell": ((7,), (5,), 0.8),
    "1d-vector-ell": ((7,), (5,), np.array([0.8])),
    "2d-scalar-ell": ((7, 3), (5, 3), 1.7),
    "2d-per-feature-ell": ((7, 3), (5, 3), np.array([0.5, 2.0, 1.3])),
}


@pytest.mark.parametrize("form", ["function", "module", "parameterized"])
@pytest.mark.parametrize("inputs", INPUTS.values(), ids=INPUTS.keys())
def test_gram_matches_closed_form(kernel_case, form, inputs, rng, tolerance):
    shape1, shape2, ell = inputs
    x1, x2 = rng.normal(size=shape1), rng.normal(size=shape2)
    fn = the_three_forms(kernel_case)[form]
    assert_matches_closed_form(fn, kernel_case, x1, x2, ell, 1.3, tolerance(np.float64))


@pytest.mark.parametrize("inputs", INPUTS.values(), ids=INPUTS.keys())
def test_gram_matches_scikit_learn(kernel_case, inputs, rng, tolerance):
    shape1, shape2, ell = inputs
    x1, x2 = rng.normal(size=shape1), rng.normal(size=shape2)
    reference = ConstantKernel(1.3**2) * kernel_case.sklearn(ell)
    want = reference(x1.reshape(shape1[0], -1), x2.reshape(shape2[0], -1))
    got = kernel_case.fn(x1, x2, ell, 1.3)
    np.testing.assert_allclose(got, want, rtol=tolerance(got.dtype), atol=tolerance(got.dtype))


def test_the_three_forms_give_the_same_numbers(kernel_case, rng):
    x = rng.normal(size=(9, 2))
    ell, amp = np.array([0.6, 1.9]), 0.7
    values = [np.asarray(f(x, x, ell, amp)) for f in the_three_forms(kernel_case).values()]
    np.testing.assert_array_equal(values[0], values[1])
    np.testing.assert_array_equal(values[0], values[2])


def test_one_feature_as_vector_or_column(kernel_case, rng):
    x1, x2 = rng.normal(size=6), rng.normal(size=4)
    np.testing.assert_array_equal(
        kernel_case.fn(x1, x2, 0.9, 1.1), kernel_case.fn(x1[:, None], x2[:, None], 0.9, 1.1)
    )


@pytest.mark.parametrize("lengthscale", [0.05, 1.0, 30.0])
def test_gram_is_symmetric_positive_semidefinite(kernel_case, lengthscale, rng):
    # Clustered inputs (near-duplicates) make the matrix as close to singular as it gets.
    x = np.concatenate([rng.normal(size=(20, 2)), rng.normal(size=(20, 2)) * 1e-4])
    amp = 1.7
    gram = np.asarray(kernel_case.fn(x, x, lengthscale, amp))
    np.testing.assert_array_equal(gram, gram.T)
    np.testing.assert_allclose(np.diagonal(gram), amp**2, rtol=1e-15)
    eigenvalues = np.linalg.eigvalsh(gram)
    assert eigenvalues.min() >= -len(x) * np.finfo(gram.dtype).eps * amp**2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strict_dtype_promotion(kernel_case, dtype, rng, tolerance):
    """With strict promotion no implicit up- or down-casting happens; with float64
    disabled everything, the result included, stays float32."""
    x1 = rng.normal(size=(6, 2)).astype(dtype)
    x2 = rng.normal(size=(4, 2)).astype(dtype)
    ell, amp = np.array([0.7, 1.6], dtype=dtype), dtype(1.2)
    with jax.enable_x64(dtype == np.float64), jax.numpy_dtype_promotion("strict"):
        module = kernel_case.module(ell, amp)
        got = eqx.filter_jit(lambda k, a, b: k(a, b))(module, x1, x2)
    assert got.dtype == dtype
    want = kernel_case.gram(
        x1.astype(np.float64), x2.astype(np.float64), ell.astype(np.float64), float(amp)
    )
    np.testing.assert_allclose(got, want, rtol=tolerance(dtype), atol=tolerance(dtype))


def test_modules_passed_into_jit(kernel_case, rng):
    x1, x2 = rng.normal(size=(6, 2)), rng.normal(size=(4, 2))
    plain = kernel_case.module(np.array([0.7, 1.6]), 1.2)
    parameterized = kernel_case.parameterized(
        lengthscale=PyroxParam(np.array([0.7, 1.6])), amplitude=PyroxParam(1.2)
    )
    want = kernel_case.fn(x1, x2, np.array([0.7, 1.6]), 1.2)

    def call(k, a, b):
        return k(a, b)

    for module in (plain, parameterized):
        np.testing.assert_allclose(jax.jit(call)(module, x1, x2), want, rtol=1e-14)
        np.testing.assert_allclose(eqx.filter_jit(call)(module, x1, x2), want, rtol=1e-14)


def test_tree_map_and_tree_at_change_the_hyperparameters(kernel_case, rng, tolerance):
    x = rng.normal(size=(5, 2))
    module = kernel_case.module(0.7, 1.2)
    rtol = tolerance(np.float64)
    doubled = jax.tree_util.tree_map(lambda leaf: 2 * leaf, module)
    assert_matches_closed_form(lambda a, b, *_: doubled(a, b), kernel_case, x, x, 1.4, 2.4, rtol)
    moved = eqx.tree_at(lambda k: k.lengthscale, module, jnp.asarray(3.0))
    assert_matches_closed_form(lambda a, b, *_: moved(a, b), kernel_case, x, x, 3.0, 1.2, rtol)


def test_vmap_over_a_batch_of_modules(kernel_case, rng, tolerance):
    x = rng.normal(size=(5, 2))
    ells, amps = np.array([0.3, 1.0, 4.0]), np.array([0.5, 1.0, 2.0])
    batch = kernel_case.module(ells, amps)  # leaves of shape (3,): one kernel per draw
    grams = jax.vmap(lambda k: k(x, x))(batch)
    assert grams.shape == (3, 5, 5)
    for gram, ell, amp in zip(grams, ells, amps):
        np.testing.assert_allclose(
            gram, kernel_case.gram(x, x, ell, amp), rtol=tolerance(gram.dtype)
        )


def test_gradient_wrt_hyperparameters_matches_finite_differences(kernel_case, rng):
    x = rng.normal(size=(6, 2))
    weights = rng.normal(size=(6, 6))
    theta = np.array([0.9, 1.3])

    def objective(k):
        return jnp.sum(weights * k(x, x))

    grads = eqx.filter_jit(eqx.filter_grad(objective))(kernel_case.module(*theta))

    def reference(ell, amp):
        return np.sum(weights * kernel_case.gram(x, x, ell, amp))

    h = 1e-6
    for i, got in enumerate([grads.lengthscale, grads.amplitude]):
        step = h * np.eye(2)[i]
        fd = (reference(*(theta + step)) - reference(*(theta - step))) / (2 * h)
        np.testing.assert_allclose(got, fd, rtol=1e-7)


def test_gradient_of_a_batch_under_jit_of_vmap(kernel_case, rng):
    """Compiled, batched gradients equal the closed form's finite differences (the
    diagonal, where r = 0, included)."""
    x = rng.normal(size=12)
    thetas = np.array([[0.5, 0.8], [1.3, 1.7], [3.0, 1.1]])

    def total(theta):
        gram = kernel_case.fn(x, x, theta[0], theta[1]) + 0.1 * jnp.eye(len(x))
        return jnp.sum(jnp.log(jnp.diagonal(jnp.linalg.cholesky(gram))))

    def reference(theta):
        gram = kernel_case.gram(x, x, *theta) + 0.1 * np.eye(len(x))
        return np.sum(np.log(np.diagonal(np.linalg.cholesky(gram))))

    got = jax.jit(jax.vmap(jax.grad(total)))(thetas)
    h = 1e-6
    for theta, g in zip(thetas, got):
        fd = [(reference(theta + h * e) - reference(theta - h * e)) / (2 * h) for e in np.eye(2)]
        np.testing.assert_allclose(g, fd, rtol=1e-6)


def test_gradient_at_coincident_inputs_is_finite_and_zero(kernel_case):
    """Every kernel is flat at r = 0: the derivative there is 0, not NaN or inf
    (up to rounding, as the compiler may form x/ell in two different ways)."""
    x0 = jnp.array([[0.3, -1.2]])
    grad_x = jax.jit(jax.grad(lambda a, b: kernel_case.fn(a, b, 0.8, 1.1)[0, 0]))(x0, x0)
    np.testing.assert_allclose(grad_x, np.zeros_like(x0), atol=1e-14)
    grad_ell = jax.jit(jax.grad(lambda ell: jnp.sum(kernel_case.fn(x0, x0, ell, 1.1))))(0.8)
    np.testing.assert_allclose(grad_ell, 0.0, atol=1e-14)
