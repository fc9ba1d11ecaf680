"""Periodic and rational-quadratic kernels, and sums and products of kernels in both
families, against scikit-learn's kernels and central finite differences; the algebra's
naming, clash and amplitude rules.

References are scikit-learn's ``RBF``, ``ExpSineSquared``, ``RationalQuadratic``,
``ConstantKernel``, ``Sum`` and ``Product`` and per-pair NumPy closed forms, never
``pyrox_lite`` itself.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density
from scipy.stats import lognorm
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process import kernels as sk

from pyrox_lite import JITTER, PyroxParam, gp, kernels, predict

jax.config.update("jax_enable_x64", True)

RTOL = 1e-10


def assert_rel(got, want, rtol=RTOL, what=""):
    """Relative error in the max norm."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err = np.max(np.abs(got - want)) / np.max(np.abs(want))
    assert err <= rtol, f"{what}: relative error {err:.2e} exceeds {rtol:.0e}"


def central_difference(f, theta, rel_step=1e-4):
    theta = np.asarray(theta, dtype=float)
    grad = np.empty_like(theta)
    for i in range(theta.size):
        h = rel_step * abs(theta[i])
        e = np.zeros_like(theta)
        e[i] = h
        grad[i] = (f(theta - 2 * e) - 8 * f(theta - e) + 8 * f(theta + e) - f(theta + 2 * e)) / (
            12 * h
        )
    return grad


# ---------------------------------------------------------------------------
# Closed forms in NumPy.


def periodic_np(x1, x2, ell, p, amp):
    """The product over features of the one-feature periodic kernel, pair by pair."""
    a1, a2 = np.atleast_2d(x1.T).T, np.atleast_2d(x2.T).T
    return amp**2 * np.array(
        [
            [
                np.prod(
                    [
                        np.exp(-2.0 * np.sin(math.pi * (u - v) / p) ** 2 / ell**2)
                        for u, v in zip(a, b)
                    ]
                )
                for b in a2
            ]
            for a in a1
        ]
    )


def sklearn_periodic(x1, x2, ell, p, amp):
    """scikit-learn's ExpSineSquared (Euclidean distance), one feature at a time, multiplied."""
    a1, a2 = col(x1), col(x2)
    factors = [sk.ExpSineSquared(ell, p)(a1[:, [d]], a2[:, [d]]) for d in range(a1.shape[1])]
    return amp**2 * np.prod(factors, axis=0)


def rq_np(x1, x2, ell, a, amp):
    a1, a2 = np.atleast_2d(x1.T).T / ell, np.atleast_2d(x2.T).T / ell
    r2 = np.sum((a1[:, None, :] - a2[None, :, :]) ** 2, -1)
    return amp**2 * (1.0 + r2 / (2.0 * a)) ** (-a)


def rbf_np(x1, x2, ell, amp):
    a1, a2 = np.atleast_2d(x1.T).T / ell, np.atleast_2d(x2.T).T / ell
    return amp**2 * np.exp(-0.5 * np.sum((a1[:, None, :] - a2[None, :, :]) ** 2, -1))


def col(x):
    return x.reshape(len(x), -1)


# ---------------------------------------------------------------------------
# Single kernels against scikit-learn and the closed form.


@pytest.mark.parametrize("shape", [(9,), (9, 1), (9, 3)])
def test_periodic_matches_scikit_learn(shape, rng):
    x1, x2 = 2.0 * rng.normal(size=shape), 2.0 * rng.normal(size=(6, *shape[1:]))
    ell, p, amp = 0.7, 1.3, 1.6
    want = sklearn_periodic(x1, x2, ell, p, amp)
    forms = {
        "function": kernels.periodic(x1, x2, ell, p, amp),
        "module": kernels.Periodic(ell, p, amp)(x1, x2),
        "parameterized": gp.Periodic(
            lengthscale=PyroxParam(ell), period=PyroxParam(p), amplitude=PyroxParam(amp)
        )(x1, x2),
    }
    for form, got in forms.items():
        assert_rel(got, want, what=form)
    assert_rel(forms["function"], periodic_np(x1, x2, ell, p, amp), what="closed form")


@pytest.mark.parametrize("shape", [(9,), (9, 3)])
def test_rational_quadratic_matches_scikit_learn(shape, rng):
    x1, x2 = rng.normal(size=shape), rng.normal(size=(6, *shape[1:]))
    ell, a, amp = 0.9, 0.6, 1.4
    want = (sk.ConstantKernel(amp**2) * sk.RationalQuadratic(ell, a))(col(x1), col(x2))
    forms = {
        "function": kernels.rational_quadratic(x1, x2, ell, a, amp),
        "module": kernels.RationalQuadratic(ell, a, amp)(x1, x2),
        "parameterized": gp.RationalQuadratic(
            lengthscale=PyroxParam(ell), alpha=PyroxParam(a), amplitude=PyroxParam(amp)
        )(x1, x2),
    }
    for form, got in forms.items():
        assert_rel(got, want, what=form)


def test_rational_quadratic_per_feature_lengthscale(rng):
    x1, x2 = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    ell = np.array([0.5, 2.0, 1.3])
    assert_rel(kernels.rational_quadratic(x1, x2, ell, 0.8, 1.2), rq_np(x1, x2, ell, 0.8, 1.2))


def test_periodic_on_several_features_is_positive_semidefinite(rng):
    """The sine of the Euclidean distance is not a valid kernel for D > 1 (its 40 x 40 Gram
    matrices have negative eigenvalues and predict then fails); the product is valid."""
    x = rng.uniform(-3.0, 3.0, size=(40, 2))
    y = np.sin(x[:, 0]) + 0.1 * rng.normal(size=40)
    gram = np.asarray(kernels.periodic(x, x, 0.5, 1.7, 1.0))
    assert np.linalg.eigvalsh(gram).min() >= -40 * np.finfo(float).eps
    prediction = predict(
        kernels.Periodic(0.5, 1.7, 1.0), x, y, rng.uniform(-3.0, 3.0, size=(50, 2)), 0.05
    )
    assert np.all(prediction.var_f >= 0.0)


def test_periodic_with_large_inputs(rng):
    """Years as inputs (about 2000): the one-feature expansion sin(u - v) stays accurate."""
    x1, x2 = 1990.0 + 8 * rng.random(30), 1990.0 + 8 * rng.random(20)
    want = (sk.ConstantKernel(1.21) * sk.ExpSineSquared(0.8, 1.0))(col(x1), col(x2))
    assert_rel(kernels.periodic(x1, x2, 0.8, 1.0, 1.1), want, rtol=1e-10)
    gram = np.asarray(kernels.periodic(x1, x1, 0.8, 1.0, 1.1))
    np.testing.assert_array_equal(gram, gram.T)
    np.testing.assert_allclose(np.diagonal(gram), 1.21, rtol=1e-15)


@pytest.mark.parametrize(
    "make",
    [
        lambda amp: kernels.RBF(1.1, amp),
        lambda amp: kernels.Periodic(0.7, 1.3, amp),
        lambda amp: kernels.RationalQuadratic(0.9, 0.6, amp),
    ],
    ids=["rbf", "periodic", "rq"],
)
def test_amplitude_none_is_a_unit_amplitude_without_a_leaf(make, rng):
    x = rng.normal(size=8)
    np.testing.assert_array_equal(make(None)(x, x), make(1.0)(x, x))
    assert (
        len(jax.tree_util.tree_leaves(make(None))) == len(jax.tree_util.tree_leaves(make(1.0))) - 1
    )
    assert not make(None).has_amplitude and make(1.0).has_amplitude


def test_parameterized_amplitude_none_registers_no_site():
    k = gp.RationalQuadratic(amplitude=None, pyrox_name="rq")
    assert k.site_names() == ["rq.lengthscale", "rq.alpha"]
    assert gp.RBF(amplitude=None).site_names() == ["rbf.lengthscale"]


# ---------------------------------------------------------------------------
# Sums and products against scikit-learn.

THETA = {
    "l1": 2.0,
    "a1": 1.5,
    "l2": 0.8,
    "p": 1.3,
    "a2": 0.7,
    "l3": 5.0,
    "l4": 1.1,
    "alpha": 0.6,
    "a3": 0.4,
}


def sklearn_composite(t=THETA):
    return (
        sk.ConstantKernel(t["a1"] ** 2) * sk.RBF(t["l1"])
        + sk.ConstantKernel(t["a2"] ** 2) * sk.ExpSineSquared(t["l2"], t["p"]) * sk.RBF(t["l3"])
        + sk.ConstantKernel(t["a3"] ** 2) * sk.RationalQuadratic(t["l4"], t["alpha"])
    )


def plain_composite(t=THETA):
    return (
        kernels.RBF(t["l1"], t["a1"])
        + kernels.Periodic(t["l2"], t["p"], t["a2"]) * kernels.RBF(t["l3"], None)
        + kernels.RationalQuadratic(t["l4"], t["alpha"], t["a3"])
    )


def parameterized_composite(t=THETA, prior=None):
    def param(value):
        return PyroxParam(value, prior=None if prior is None else prior(value))

    return (
        gp.RBF(lengthscale=param(t["l1"]), amplitude=param(t["a1"]), pyrox_name="trend")
        + gp.Periodic(
            lengthscale=param(t["l2"]),
            period=param(t["p"]),
            amplitude=param(t["a2"]),
            pyrox_name="seasonal",
        )
        * gp.RBF(lengthscale=param(t["l3"]), amplitude=None, pyrox_name="decay")
        + gp.RationalQuadratic(
            lengthscale=param(t["l4"]),
            alpha=param(t["alpha"]),
            amplitude=param(t["a3"]),
            pyrox_name="medium",
        )
    )


SITES = {
    "trend.lengthscale": "l1",
    "trend.amplitude": "a1",
    "seasonal.lengthscale": "l2",
    "seasonal.period": "p",
    "seasonal.amplitude": "a2",
    "decay.lengthscale": "l3",
    "medium.lengthscale": "l4",
    "medium.alpha": "alpha",
    "medium.amplitude": "a3",
}


def test_composites_match_scikit_learn(rng):
    x1, x2 = 3.0 * rng.normal(size=12), 3.0 * rng.normal(size=7)
    want = sklearn_composite()(col(x1), col(x2))
    assert_rel(plain_composite()(x1, x2), want, what="plain")
    assert_rel(parameterized_composite()(x1, x2), want, what="parameterized")


@pytest.mark.parametrize("op", ["sum", "product"])
def test_two_kernel_sum_and_product_match_scikit_learn(op, rng):
    x1, x2 = rng.normal(size=(8, 2)), rng.normal(size=(5, 2))
    a, b = kernels.RBF(0.9, 1.2), kernels.RationalQuadratic(1.4, 0.7, 0.5 if op == "sum" else None)
    ska = sk.ConstantKernel(1.44) * sk.RBF(0.9)
    skb = sk.RationalQuadratic(1.4, 0.7)
    if op == "sum":
        got, want = (a + b)(x1, x2), sk.Sum(ska, sk.ConstantKernel(0.25) * skb)(x1, x2)
    else:
        got, want = (a * b)(x1, x2), sk.Product(ska, skb)(x1, x2)
    assert_rel(got, want)


def test_composite_kernels_are_modules_of_their_family():
    plain, param = plain_composite(), parameterized_composite()
    assert isinstance(plain, kernels.Sum) and isinstance(param, gp.Sum)
    assert [type(k) for k in plain.parts] == [
        kernels.RBF,
        kernels.Product,
        kernels.RationalQuadratic,
    ]
    assert [type(k) for k in param.parts] == [gp.RBF, gp.Product, gp.RationalQuadratic]
    assert len(plain.parts[1].parts) == len(param.parts[1].parts) == 2


def test_nested_sums_and_products_are_flattened():
    a, b, c = kernels.RBF(1.0, 1.0), kernels.Matern32(1.0, 1.0), kernels.Matern52(1.0, 1.0)
    assert len((a + b + c).parts) == 3 and len((a + (b + c)).parts) == 3
    u = kernels.Periodic(1.0, 1.0, None)
    assert len((a * u * kernels.RBF(2.0, None)).parts) == 3


def test_plain_composite_under_jit_vmap_and_tree_at(rng):
    x = rng.normal(size=6)
    k = plain_composite()
    want = sklearn_composite()(col(x), col(x))
    assert_rel(eqx.filter_jit(lambda k, x: k(x, x))(k, x), want, what="filter_jit")
    moved = eqx.tree_at(lambda k: k.parts[1].parts[1].lengthscale, k, jnp.asarray(9.0))
    assert_rel(moved(x, x), sklearn_composite({**THETA, "l3": 9.0})(col(x), col(x)), what="tree_at")
    batch = jax.tree_util.tree_map(lambda leaf: jnp.stack([leaf, 2 * leaf]), k)
    grams = jax.vmap(lambda k: k(x, x))(batch)
    doubled = {n: 2 * v for n, v in THETA.items()}
    assert_rel(grams[1], sklearn_composite(doubled)(col(x), col(x)), what="vmap")


# ---------------------------------------------------------------------------
# Gradients against central finite differences.

NAMES = list(THETA)


def plain_from(theta):
    return plain_composite(dict(zip(NAMES, theta)))


@pytest.mark.parametrize("n_features", [1, 2])
def test_composite_gradient_matches_finite_differences(n_features, rng):
    x = rng.normal(size=(10, n_features)).squeeze()
    weights = rng.normal(size=(10, 10))
    theta = np.array([THETA[n] for n in NAMES])

    def reference(th):
        t = dict(zip(NAMES, th))
        k = (
            rbf_np(x, x, t["l1"], t["a1"])
            + periodic_np(x, x, t["l2"], t["p"], t["a2"]) * rbf_np(x, x, t["l3"], 1.0)
            + rq_np(x, x, t["l4"], t["alpha"], t["a3"])
        )
        return float(np.sum(weights * k))

    got = jax.jit(jax.grad(lambda th: jnp.sum(weights * plain_from(th)(x, x))))(theta)
    assert_rel(got, central_difference(reference, theta), rtol=1e-8)


def test_gradient_of_the_log_marginal_through_a_composite(rng):
    """The GP log marginal likelihood of the composite, differentiated by JAX through
    GPMarginal's hand-written gradient, against finite differences of scikit-learn's."""
    x = np.sort(rng.uniform(0.0, 6.0, 30))
    y = np.sin(2 * math.pi * x) + 0.3 * x + 0.1 * rng.normal(size=30)
    theta = np.array([THETA[n] for n in NAMES] + [0.2])

    def reference(th):
        t = dict(zip(NAMES, th[:-1]))
        kernel = sklearn_composite(t) + sk.WhiteKernel(th[-1] ** 2)
        gpr = GaussianProcessRegressor(kernel, alpha=JITTER, optimizer=None).fit(col(x), y)
        return gpr.log_marginal_likelihood_value_

    model = gp.ExactGP(parameterized_composite(), noise=PyroxParam(0.2), pyrox_name="gp")
    names = [n for n in SITES] + ["gp.noise"]
    keys = [SITES[n] for n in SITES] + ["noise"]
    order = [keys.index(n) for n in NAMES + ["noise"]]

    def ours(th):
        params = {names[i]: th[j] for j, i in enumerate(order)}
        return log_density(model, (x, y), {}, params)[0]

    value, grad = jax.jit(jax.value_and_grad(ours))(theta)
    np.testing.assert_allclose(value, reference(theta), rtol=1e-10)
    assert_rel(grad, central_difference(reference, theta), rtol=1e-7)


def test_gradient_at_coincident_inputs_is_finite_and_zero():
    for fn in (
        lambda a, b: kernels.periodic(a, b, 0.8, 1.3, 1.1),
        lambda a, b: kernels.rational_quadratic(a, b, 0.8, 0.7, 1.1),
    ):
        for x0 in (jnp.array([0.3]), jnp.array([[0.3, -1.2]])):
            g = jax.jit(jax.grad(lambda a, b, fn=fn: fn(a, b)[0, 0]))(x0, x0)
            np.testing.assert_allclose(g, np.zeros_like(x0), atol=1e-14)


# ---------------------------------------------------------------------------
# ExactGP and predict with a composite kernel.


def test_exact_gp_log_joint_matches_scipy_and_scikit_learn(rng):
    x = np.sort(rng.uniform(0.0, 5.0, 25))
    y = np.cos(2 * math.pi * x) + 0.1 * rng.normal(size=25)
    prior = lambda v: dist.LogNormal(math.log(v), 0.5)  # noqa: E731
    model = gp.ExactGP(
        parameterized_composite(prior=prior),
        noise=PyroxParam(0.1, prior=dist.LogNormal(math.log(0.1), 0.5)),
        pyrox_name="gp",
    )
    theta = {**{s: THETA[k] * 1.1 for s, k in SITES.items()}, "gp.noise": 0.12}
    kernel = sklearn_composite({k: theta[s] for s, k in SITES.items()}) + sk.WhiteKernel(0.12**2)
    lml = (
        GaussianProcessRegressor(kernel, alpha=JITTER, optimizer=None)
        .fit(col(x), y)
        .log_marginal_likelihood_value_
    )
    base = {**{s: THETA[k] for s, k in SITES.items()}, "gp.noise": 0.1}
    log_prior = sum(lognorm.logpdf(theta[s], s=0.5, scale=base[s]) for s in theta)
    np.testing.assert_allclose(
        log_density(model, (x, y), {}, theta)[0], lml + log_prior, rtol=1e-10
    )


def test_predict_with_a_composite_matches_scikit_learn(rng):
    x = np.sort(rng.uniform(0.0, 5.0, 25))
    y = np.cos(2 * math.pi * x) + 0.1 * rng.normal(size=25)
    x_test = np.linspace(-1.0, 6.0, 9)
    gpr = GaussianProcessRegressor(sklearn_composite(), alpha=0.1**2 + JITTER, optimizer=None).fit(
        col(x), y
    )
    mean, sd = gpr.predict(col(x_test), return_std=True)
    for kernel in (plain_composite(), parameterized_composite()):
        got = predict(kernel, x, y, x_test, 0.1)
        assert_rel(got.mean, mean, rtol=1e-8, what="mean")
        assert_rel(np.sqrt(got.var_f), sd, rtol=1e-8, what="sd of f")
    exact = gp.ExactGP(parameterized_composite(), noise=PyroxParam(0.1))
    assert_rel(exact.predict(x, y, x_test).mean, mean, rtol=1e-8, what="ExactGP.predict")


# ---------------------------------------------------------------------------
# Names, clashes, the amplitude rule and bad input.


def test_site_names_of_a_composite_are_those_of_its_parts_in_order():
    k = parameterized_composite()
    assert k.site_names() == list(SITES)
    model = gp.ExactGP(k, pyrox_name="gp")
    assert model.site_names() == list(SITES) + ["gp.noise"]


def test_two_unnamed_kernels_of_one_class_clash_and_naming_them_fixes_it():
    with pytest.raises(ValueError, match=r"rbf\.lengthscale.*pyrox_name"):
        gp.RBF() + gp.Periodic() * gp.RBF(amplitude=None) + gp.RBF()
    with pytest.raises(ValueError, match="pyrox_name"):
        gp.Periodic() * gp.RBF(amplitude=None) * gp.RBF(amplitude=None)
    named = gp.RBF(pyrox_name="a") + gp.RBF(pyrox_name="b")
    assert named.site_names() == ["a.lengthscale", "a.amplitude", "b.lengthscale", "b.amplitude"]


@pytest.mark.parametrize("family", ["plain", "parameterized"])
def test_product_allows_an_amplitude_on_the_first_factor_only(family):
    if family == "plain":
        with_amp, without = (
            (lambda: kernels.RBF(1.0, 1.0)),
            (lambda: kernels.Periodic(1.0, 1.0, None)),
        )
    else:
        with_amp = lambda: gp.RBF(pyrox_name="r")  # noqa: E731
        without = lambda: gp.Periodic(amplitude=None, pyrox_name="p")  # noqa: E731
    assert (with_amp() * without()).has_amplitude
    with pytest.raises(ValueError, match=r"only the first factor.*amplitude=None"):
        without() * with_amp()
    with pytest.raises(ValueError, match=r"factor\(s\) 1"):
        with_amp() * (with_amp() if family == "plain" else gp.RBF(pyrox_name="s"))


def test_a_sum_with_amplitudes_cannot_be_a_later_factor():
    a = kernels.RBF(1.0, 1.0)
    with pytest.raises(ValueError, match="only the first factor"):
        kernels.Periodic(1.0, 1.0, 1.0) * (a + kernels.RBF(2.0, 1.0))
    unit = kernels.RBF(1.0, None) + kernels.RBF(2.0, None)
    assert not unit.has_amplitude
    assert len((a * unit).parts) == 2


def test_families_do_not_mix_and_non_kernels_are_refused():
    with pytest.raises(TypeError, match=r"pyrox_lite\.kernels.*pyrox_lite\.gp\.RBF"):
        kernels.RBF(1.0, 1.0) + gp.RBF()
    with pytest.raises(TypeError, match=r"pyrox_lite\.gp.*pyrox_lite\.kernels\.RBF"):
        gp.RBF() * kernels.RBF(1.0, None)
    with pytest.raises(TypeError, match="float"):
        kernels.RBF(1.0, 1.0) + 1.0
    with pytest.raises(ValueError, match="at least two"):
        kernels.Sum((kernels.RBF(1.0, 1.0),))
    with pytest.raises(TypeError, match="part 1"):
        gp.Sum((gp.RBF(), "rbf"))


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: kernels.Periodic(1.0, 0.0, 1.0), "period"),
        (lambda: kernels.Periodic(-1.0, 1.0, 1.0), "lengthscale"),
        (lambda: kernels.RationalQuadratic(1.0, -0.5, 1.0), "alpha"),
        (lambda: kernels.RationalQuadratic(1.0, 1.0, 0.0), "amplitude"),
        (
            lambda: gp.Periodic(period=PyroxParam(-1.0, constraint=dist.constraints.positive)),
            "period",
        ),
    ],
)
def test_non_positive_hyperparameters_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_shapes_of_the_new_hyperparameters_are_checked(rng):
    x = rng.normal(size=(5, 2))
    with pytest.raises(ValueError, match="`lengthscale` must be a scalar"):
        kernels.periodic(x, x, np.array([1.0, 2.0]), 1.0, 1.0)
    with pytest.raises(ValueError, match="`period` must be a scalar"):
        kernels.periodic(x, x, 1.0, np.array([1.0, 2.0]), 1.0)
    with pytest.raises(ValueError, match="`alpha` must be a scalar"):
        kernels.rational_quadratic(x, x, 1.0, np.array([1.0, 2.0]), 1.0)
