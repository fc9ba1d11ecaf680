"""Bad input: each error has the right type and a message that names the problem,
and it is raised before any inference starts."""

from __future__ import annotations

import re

import equinox as eqx
import jax
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import log_density

import pyrox_lite
from pyrox_lite import (
    GPMarginal,
    Parameterized,
    PyroxModule,
    PyroxParam,
    gp,
    gp_log_marginal,
    kernels,
    predict,
    pyrox_method,
)

jax.config.update("jax_enable_x64", True)

X = np.linspace(-1.0, 1.0, 6)
Y = np.sin(3.0 * X)


def with_nan(a: np.ndarray, index=0, value=np.nan) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.flat[index] = value
    return a


def exact_gp() -> gp.ExactGP:
    return gp.ExactGP(gp.RBF(lengthscale=PyroxParam(0.7, prior=dist.LogNormal(0.0, 1.0))))


def fit_predict(x, y, x_test):
    return predict(kernels.RBF(0.7, 1.2), x, y, x_test, 0.1)


# ---------------------------------------------------------------------------
# Data: shapes, lengths, non-finite values. Each case goes through the model
# call (ExactGP), the module's predict and the pure predict.

BAD_DATA = {
    # name: (x, y, x_test, message)
    "x-y-lengths": (X, Y[:5], X, r"same length; got 6 inputs and 5 targets"),
    "x-rank-3": (
        X[:, None, None],
        Y,
        X,
        r"`x` must have shape \(N,\) or \(N, D\); got shape \(6, 1, 1\)",
    ),
    "x-rank-0": (np.float64(1.0), Y, X, r"`x` must have shape \(N,\) or \(N, D\); got shape \(\)"),
    "y-column": (X, Y[:, None], X, r"`y` must have shape \(N,\); got shape \(6, 1\)"),
    "x-nan": (with_nan(X), Y, X, r"`x` contains 1 NaN or infinite"),
    "x-inf": (with_nan(X, 3, np.inf), Y, X, r"`x` contains 1 NaN or infinite"),
    "y-nan": (X, with_nan(Y, 2), X, r"`y` contains 1 NaN or infinite"),
    "y-inf": (X, with_nan(with_nan(Y, 1, -np.inf), 4), X, r"`y` contains 2 NaN or infinite"),
}
BAD_TEST_INPUTS = {
    "x_test-rank-3": (X, Y, X[:, None, None], r"`x_test` must have shape \(N,\) or \(N, D\)"),
    "x_test-nan": (X, Y, with_nan(X, 5), r"`x_test` contains 1 NaN or infinite"),
    "x_test-features": (
        X,
        Y,
        np.ones((4, 2)),
        r"`x_test` must have the same number of features as `x`; got 2 and 1",
    ),
    "x-features": (
        np.ones((6, 3)),
        Y,
        np.ones((4, 2)),
        r"same number of features as `x`; got 2 and 3",
    ),
}


@pytest.mark.parametrize("x, y, x_test, message", BAD_DATA.values(), ids=BAD_DATA.keys())
def test_bad_training_data(x, y, x_test, message):
    with pytest.raises(ValueError, match=message):
        handlers.seed(exact_gp(), rng_seed=0)(x, y)
    with pytest.raises(ValueError, match=message):
        exact_gp()(x, y)  # outside any handler the data are checked too
    with pytest.raises(ValueError, match=message):
        exact_gp().predict(x, y, x_test)
    with pytest.raises(ValueError, match=message):
        fit_predict(x, y, x_test)


@pytest.mark.parametrize(
    "x, y, x_test, message", BAD_TEST_INPUTS.values(), ids=BAD_TEST_INPUTS.keys()
)
def test_bad_test_inputs(x, y, x_test, message):
    with pytest.raises(ValueError, match=message):
        exact_gp().predict(x, y, x_test)
    with pytest.raises(ValueError, match=message):
        fit_predict(x, y, x_test)


def test_errors_come_before_nuts_runs():
    """MCMC.run traces the model with the concrete data first, so our check fires
    before the sampler is compiled."""
    model = exact_gp()
    mcmc = MCMC(NUTS(model), num_warmup=5, num_samples=5, progress_bar=False)
    with pytest.raises(ValueError, match=r"`y` contains 1 NaN"):
        mcmc.run(jax.random.key(0), X, with_nan(Y, 3))
    with pytest.raises(ValueError, match=r"same length; got 6 inputs and 4 targets"):
        mcmc.run(jax.random.key(0), X, Y[:4])
    with pytest.raises(ValueError, match=r"`x` contains 1 NaN"):
        MCMC(NUTS(model), num_warmup=5, num_samples=5, progress_bar=False).run(
            jax.random.key(0), with_nan(X), Y
        )


# ---------------------------------------------------------------------------
# Kernels, Gram matrices, covariances.


@pytest.mark.parametrize("fn", [kernels.rbf, kernels.matern32, kernels.matern52])
def test_kernel_input_shapes(fn):
    with pytest.raises(
        ValueError, match=r"`x1` must have shape \(N,\) or \(N, D\); got shape \(2, 2, 2\)"
    ):
        fn(np.ones((2, 2, 2)), np.ones((3, 2)), 1.0, 1.0)
    with pytest.raises(
        ValueError, match=r"`x2` must have shape \(N,\) or \(N, D\); got shape \(\)"
    ):
        fn(np.ones(3), np.float64(1.0), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"same number of features; got 2 and 3"):
        fn(np.ones((4, 2)), np.ones((5, 3)), 1.0, 1.0)
    with pytest.raises(
        ValueError, match=r"`lengthscale` must be a scalar or have shape \(2,\); got shape \(3,\)"
    ):
        fn(np.ones((4, 2)), np.ones((5, 2)), np.ones(3), 1.0)
    with pytest.raises(
        ValueError, match=r"`lengthscale` must be a scalar or have shape \(2,\); got shape \(2, 1\)"
    ):
        fn(np.ones((4, 2)), np.ones((5, 2)), np.ones((2, 1)), 1.0)


def test_gram_and_covariance_shapes():
    with pytest.raises(ValueError, match=r"`gram` must have shape \(\.\.\., N, N\); got \(6,\)"):
        GPMarginal(np.ones(6), 0.1)
    with pytest.raises(ValueError, match=r"`gram` must have shape \(\.\.\., N, N\); got \(6, 5\)"):
        GPMarginal(np.ones((6, 5)), 0.1)
    with pytest.raises(
        ValueError, match=r"`cov` must have shape \(\.\.\., N, N\) and `y` shape \(\.\.\., N\)"
    ):
        gp_log_marginal(Y, np.eye(5))
    with pytest.raises(ValueError, match=r"`cov` must have shape"):
        gp_log_marginal(Y, np.ones(6))
    with pytest.raises(
        ValueError, match=r"observations must have 6 entries, one per row of `gram`"
    ):
        GPMarginal(np.eye(6), 0.1).log_prob(Y[:5])
    with pytest.raises(ValueError, match=r"`y` contains 1 NaN"):
        GPMarginal(np.eye(6), 0.1).log_prob(np.where(np.arange(6) == 2, np.nan, 1.0))


# ---------------------------------------------------------------------------
# Parameters.


@pytest.mark.parametrize("module", [kernels.RBF, kernels.Matern32, kernels.Matern52])
def test_plain_kernel_rejects_non_positive_hyperparameters(module):
    with pytest.raises(ValueError, match=r"`lengthscale` must be positive; got -1\.0"):
        module(-1.0, 1.0)
    with pytest.raises(ValueError, match=r"`amplitude` must be positive; got 0\.0"):
        module(1.0, 0.0)
    with pytest.raises(ValueError, match=r"`lengthscale` must be positive; got \[ 1\. -2\.\]"):
        module(np.array([1.0, -2.0]), 1.0)


NOT_POSITIVE = {
    "prior": lambda init: PyroxParam(init, prior=dist.LogNormal(0.0, 1.0)),
    "constraint": lambda init: PyroxParam(init, constraint=constraints.positive),
}


@pytest.mark.parametrize("make", NOT_POSITIVE.values(), ids=NOT_POSITIVE.keys())
@pytest.mark.parametrize("kernel", [gp.RBF, gp.Matern32, gp.Matern52])
def test_pyrox_param_init_outside_its_support(kernel, make):
    with pytest.raises(
        ValueError,
        match=r"Parameter 'lengthscale': init value -1\.0 is outside its support Positive",
    ):
        kernel(lengthscale=make(-1.0))
    with pytest.raises(
        ValueError, match=r"Parameter 'amplitude': init value 0\.0 is outside its support"
    ):
        kernel(amplitude=make(0.0))
    with pytest.raises(
        ValueError, match=r"Parameter 'noise': init value -0\.1 is outside its support"
    ):
        gp.ExactGP(kernel(), noise=make(-0.1))
    with pytest.raises(ValueError, match=r"Parameter 'lengthscale': init value nan is not finite"):
        kernel(lengthscale=make(np.nan))


def test_unknown_parameter_name():
    message = (
        r"RBF has no parameter 'lenghtscale'; its parameters are \['lengthscale', 'amplitude'\]"
    )
    with pytest.raises(ValueError, match=message):
        gp.RBF().get_param("lenghtscale")
    with pytest.raises(ValueError, match=r"ExactGP has no parameter 'kernel'"):
        exact_gp().get_param("kernel")  # a field, but not a PyroxParam


# ---------------------------------------------------------------------------
# Site names that clash.


class SampledRBF(PyroxModule):
    @pyrox_method
    def __call__(self, x1, x2):
        ell = self.pyrox_sample("lengthscale", dist.LogNormal(0.0, 1.0))
        return kernels.rbf(x1, x2, ell, 1.0)


class SumOfTwo(PyroxModule):
    first: PyroxModule
    second: PyroxModule

    @pyrox_method
    def __call__(self, x1, x2):
        return self.first(x1, x2) + self.second(x1, x2)


def test_two_modules_claim_one_site_in_one_call():
    model = SumOfTwo(SampledRBF(), SampledRBF())
    message = r"Site 'sampledrbf.lengthscale' is registered by two different modules .*distinct `pyrox_name=`"
    with pytest.raises(ValueError, match=message):
        handlers.seed(model, rng_seed=0)(X, X)
    # Distinct names fix it.
    handlers.seed(SumOfTwo(SampledRBF(pyrox_name="a"), SampledRBF(pyrox_name="b")), rng_seed=0)(
        X, X
    )


def test_parameterized_site_names_clash_at_construction():
    class KernelSum(Parameterized):
        first: gp.Kernel
        second: gp.Kernel

    message = r"KernelSum: site name\(s\) \['rbf.amplitude', 'rbf.lengthscale'\] are used by more than one"
    with pytest.raises(ValueError, match=message):
        KernelSum(gp.RBF(), gp.RBF())
    assert KernelSum(gp.RBF(pyrox_name="a"), gp.RBF(pyrox_name="b")).site_names() == [
        "a.lengthscale",
        "a.amplitude",
        "b.lengthscale",
        "b.amplitude",
    ]


def test_exact_gp_site_names_clash_at_construction():
    class NoisyRBF(gp.RBF):
        noise: PyroxParam = eqx.field(
            default_factory=lambda: PyroxParam(0.1, constraint=constraints.positive)
        )

    with pytest.raises(
        ValueError, match=r"ExactGP: site name\(s\) \['exactgp.noise'\] are used by more than one"
    ):
        gp.ExactGP(NoisyRBF(pyrox_name="exactgp"))
    gp.ExactGP(NoisyRBF())  # the default scope, "noisyrbf", does not clash


def test_pyrox_sample_needs_a_handler():
    with pytest.raises(
        RuntimeError, match=r"pyrox_sample\('lengthscale'\) needs a NumPyro handler"
    ):
        SampledRBF()(X, X)


# ---------------------------------------------------------------------------
# Empty data.


EMPTY = np.zeros(0)


def test_empty_training_data():
    message = r"`x` holds no data points \(N = 0\)"
    with pytest.raises(ValueError, match=message):
        exact_gp()(EMPTY, EMPTY)
    with pytest.raises(ValueError, match=message):
        handlers.seed(exact_gp(), rng_seed=0)(EMPTY, EMPTY)
    with pytest.raises(ValueError, match=message):
        handlers.seed(exact_gp(), rng_seed=0)(EMPTY)  # a prior draw of no points
    with pytest.raises(ValueError, match=message):
        exact_gp().predict(EMPTY, EMPTY, X)
    with pytest.raises(ValueError, match=message):
        fit_predict(EMPTY, EMPTY, X)
    with pytest.raises(ValueError, match=message):
        fit_predict(np.zeros((0, 2)), EMPTY, np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"`gram` holds no data points \(N = 0\)"):
        GPMarginal(np.zeros((0, 0)), 0.1)
    with pytest.raises(ValueError, match=r"`cov` holds no data points \(N = 0\)"):
        gp_log_marginal(EMPTY, np.zeros((0, 0)))
    with pytest.raises(ValueError, match=r"`x` has shape \(6, 0\): no features"):
        exact_gp()(np.zeros((6, 0)), Y)


def test_empty_test_inputs_are_allowed():
    """Predicting at no test points is well defined: three empty moments."""
    prediction = fit_predict(X, Y, EMPTY)
    assert [m.shape for m in prediction] == [(0,), (0,), (0,)]


def test_empty_data_stops_nuts_before_it_runs():
    mcmc = MCMC(NUTS(exact_gp()), num_warmup=5, num_samples=5, progress_bar=False)
    with pytest.raises(ValueError, match=r"`x` holds no data points"):
        mcmc.run(jax.random.key(0), EMPTY, EMPTY)


# ---------------------------------------------------------------------------
# Low precision and failed factorisations.


def long_lengthscale_problem(n: int = 300):
    """The reported case: 300 points, lengthscale 5, noise sd 1e-3 (a near-singular covariance)."""
    x = np.linspace(-10.0, 10.0, n)
    return x, np.sin(x), kernels.RBF(5.0, 1.0), 1e-3


@pytest.fixture
def float32():
    """float64 off for the duration of one test (the setting is restored afterwards)."""
    with jax.enable_x64(False):
        yield


X64_FIX = r'jax\.config\.update\("jax_enable_x64", True\)'


def warned(action, *args) -> list[str]:
    """The messages of the UserWarnings ``action(*args)`` gives (its errors propagate)."""
    with pytest.warns(UserWarning) as record:
        action(*args)
    return [str(w.message) for w in record]


def test_float32_is_reported_with_the_fix(float32):
    cases = {
        "`x`": lambda: handlers.seed(exact_gp(), rng_seed=0)(X, Y),
        "`cov`": lambda: gp_log_marginal(Y, np.eye(6)),
        "`gram`": lambda: GPMarginal(np.eye(6), 0.1),
        "`x` ": lambda: fit_predict(X, Y, X),
    }
    for name, action in cases.items():
        messages = warned(action)
        pattern = rf"{name.strip()} is float32: float64 is not enabled.*{X64_FIX}"
        assert any(re.search(pattern, m) for m in messages), messages


def test_float32_failure_is_an_error_naming_precision(float32):
    """In float32 the reported case's Cholesky factorisation fails: eagerly, that is an error
    naming the fix, not a NaN."""
    x, y, kernel, noise = long_lengthscale_problem()
    with pytest.warns(UserWarning):
        cov = GPMarginal(kernel(x, x), noise).covariance_matrix
    assert cov.dtype == np.float32
    message = rf"Cholesky factorisation of the 300 x 300 covariance failed.*float32.*{X64_FIX}"
    calls = [
        lambda: gp_log_marginal(y, cov),
        lambda: GPMarginal(kernel(x, x), noise).log_prob(y),
        lambda: predict(kernel, x, y, X, noise),
        lambda: GPMarginal(kernel(x, x), noise).sample(jax.random.key(0)),
    ]
    for call in calls:
        with pytest.raises(np.linalg.LinAlgError, match=message):
            warned(call)


def test_float64_handles_the_reported_case():
    x, y, kernel, noise = long_lengthscale_problem()
    assert np.isfinite(gp_log_marginal(y, GPMarginal(kernel(x, x), noise).covariance_matrix))


def test_failed_factorisation_names_the_causes():
    """A covariance that is not positive definite even in float64."""
    cov = np.eye(6) - 2.0 * np.outer(np.ones(6), np.ones(6)) / 6  # eigenvalue -1
    message = (
        r"gp_log_marginal: the Cholesky factorisation of the 6 x 6 covariance failed.*"
        r"smallest eigenvalue relative to its largest is -1\.0e\+00.*"
        r"\(1\) precision.*\(2\) jitter.*\(3\) scale of the data"
    )
    with pytest.raises(np.linalg.LinAlgError, match=message):
        gp_log_marginal(Y, cov)
    with pytest.raises(ValueError, match=r"Cholesky"):  # LinAlgError is a ValueError
        gp_log_marginal(np.stack([Y, Y]), np.stack([np.eye(6), cov]))


def test_no_check_under_jit():
    """Under jit the failure is not inspected (nothing is added to the compiled program):
    the result is NaN, as from any JAX Cholesky."""
    cov = np.eye(6) - 2.0 * np.outer(np.ones(6), np.ones(6)) / 6
    assert np.isnan(jax.jit(gp_log_marginal)(Y, cov))


# ---------------------------------------------------------------------------
# Priors and constraints that do not fit the domain of their field.


WRONG_SUPPORT = {
    "normal-prior": dict(prior=dist.Normal(0.0, 1.0)),
    "cauchy-prior": dict(prior=dist.Cauchy(0.0, 1.0)),
    "negative-uniform": dict(prior=dist.Uniform(-1.0, 0.0)),
    "poisson-includes-zero": dict(prior=dist.Poisson(2.0)),
    "normal-prior-with-positive-constraint": dict(
        prior=dist.Normal(0.0, 1.0), constraint=constraints.positive
    ),
    "real-constraint": dict(constraint=constraints.real),
    "vector-normal": dict(prior=dist.Normal(0.0, 1.0).expand([2]).to_event(1)),
}


@pytest.mark.parametrize("kwargs", WRONG_SUPPORT.values(), ids=WRONG_SUPPORT.keys())
@pytest.mark.parametrize("kernel", [gp.RBF, gp.Matern32, gp.Matern52])
def test_support_outside_the_domain_is_an_error(kernel, kwargs):
    init = np.ones(kwargs["prior"].event_shape) if "prior" in kwargs else 1.0
    what = "prior" if "prior" in kwargs else "constraint"
    for name in ("lengthscale", "amplitude"):
        with pytest.raises(
            ValueError,
            match=rf"Parameter '{name}': its {what} has support .* outside the parameter's domain Positive",
        ):
            kernel(**{name: PyroxParam(init, **kwargs)})
    with pytest.raises(
        ValueError, match=r"Parameter 'noise': its .* outside the parameter's domain"
    ):
        gp.ExactGP(kernel(), noise=PyroxParam(init, **kwargs))


def test_the_error_suggests_a_positive_prior():
    with pytest.raises(ValueError, match=r"dist\.LogNormal, dist\.HalfNormal"):
        gp.RBF(lengthscale=PyroxParam(1.0, prior=dist.Normal(0.0, 1.0)))


FITTING_SUPPORT = {
    "lognormal": dist.LogNormal(0.0, 1.0),
    "halfnormal": dist.HalfNormal(1.0),
    "gamma": dist.Gamma(2.0, 1.0),
    "uniform-from-zero": dist.Uniform(0.0, 10.0),
    "truncated-normal-at-zero": dist.TruncatedNormal(1.0, 1.0, low=0.0),
    "loguniform": dist.LogUniform(0.1, 10.0),
    "vector-lognormal": dist.LogNormal(0.0, 1.0).expand([2]).to_event(1),
}


@pytest.mark.parametrize("prior", FITTING_SUPPORT.values(), ids=FITTING_SUPPORT.keys())
def test_support_inside_the_domain_is_accepted(prior):
    init = np.ones(prior.event_shape)
    gp.RBF(lengthscale=PyroxParam(init, prior=prior), amplitude=PyroxParam(init, prior=prior))
    gp.ExactGP(gp.RBF(), noise=PyroxParam(init, prior=prior))


def test_a_value_without_prior_or_constraint_takes_the_domain():
    """PyroxParam(init) in a positive field is a positive parameter: its init is checked
    against the domain, and its numpyro.param site is constrained to it."""
    with pytest.raises(
        ValueError,
        match=r"Parameter 'lengthscale': init value -1\.0 is outside its support Positive",
    ):
        gp.RBF(lengthscale=PyroxParam(-1.0))
    trace = handlers.trace(
        handlers.seed(gp.RBF(lengthscale=PyroxParam(0.5)), rng_seed=0)
    ).get_trace(X, X)
    assert trace["rbf.lengthscale"]["kwargs"]["constraint"] is constraints.positive


def test_the_domain_comes_from_the_field():
    """A field declared with a real domain takes a real-line prior; a field declared
    without param_field is not checked (as before)."""

    class Shifted(Parameterized):
        shift: PyroxParam = pyrox_lite.param_field(0.0, domain=constraints.real)
        scale: PyroxParam = pyrox_lite.param_field(1.0)
        free: PyroxParam = eqx.field(default_factory=lambda: PyroxParam(0.0))

    Shifted(
        shift=PyroxParam(-3.0, prior=dist.Normal(0.0, 1.0)),
        free=PyroxParam(-1.0, prior=dist.Normal()),
    )
    with pytest.raises(ValueError, match=r"Parameter 'scale': its prior has support Real\(\)"):
        Shifted(scale=PyroxParam(1.0, prior=dist.Normal(0.0, 1.0)))
    assert Shifted().scale.constraint is constraints.positive
    assert Shifted().shift.constraint is constraints.real


# ---------------------------------------------------------------------------
# Validation happens once, at the entry point, and does not depend on display names.


def test_one_model_call_checks_the_data_once(monkeypatch):
    """ExactGP checks y on entry; the distribution and the likelihood under it only explain
    a result that is not finite, so a valid call inspects y once."""
    checked = []
    original = pyrox_lite._checks.check_finite

    def counting(x, name):
        checked.append(name)
        return original(x, name)

    for module in (pyrox_lite._checks, pyrox_lite.likelihood, pyrox_lite.gp):
        if hasattr(module, "check_finite"):
            monkeypatch.setattr(module, "check_finite", counting)
    theta = {"rbf.lengthscale": 0.7, "rbf.amplitude": 1.0, "exactgp.noise": 0.1}
    log_density(exact_gp(), (X, Y), {}, theta)  # the log density NUTS starts from
    assert checked == ["x", "y"]


def test_check_data_does_not_depend_on_the_display_name():
    from pyrox_lite._checks import check_data

    with pytest.raises(ValueError, match=r"`inputs` holds no data points"):
        check_data(EMPTY, x_name="inputs")
    assert check_data(EMPTY, x_name="x", allow_empty=True)[0].shape == (0,)
    with pytest.warns(UserWarning, match=r"`inputs` is float32"), jax.enable_x64(False):
        check_data(X.astype(np.float32), x_name="inputs")


# ---------------------------------------------------------------------------
# Values put in place by eqx.tree_at are checked too: when the sites are registered.

TREE_AT = {
    "normal-prior": (
        lambda g: g.kernel.lengthscale,
        PyroxParam(1.0, prior=dist.Normal(0.0, 1.0)),
        r"Parameter 'lengthscale': its prior has support Real\(\), which reaches outside",
    ),
    "negative-init": (
        lambda g: g.kernel.lengthscale.init,
        np.asarray(-1.0),
        r"Parameter 'lengthscale': init value -1\.0 is outside its support",
    ),
    "nan-noise": (lambda g: g.noise.init, np.asarray(np.nan), r"Parameter 'noise': init value nan"),
}


@pytest.mark.parametrize("where, value, message", TREE_AT.values(), ids=TREE_AT.keys())
def test_values_put_by_tree_at_are_checked(where, value, message):
    model = eqx.tree_at(where, exact_gp(), value)
    with pytest.raises(ValueError, match=message):
        handlers.seed(model, rng_seed=0)(X, Y)
    with pytest.raises(ValueError, match=message):
        MCMC(NUTS(model), num_warmup=5, num_samples=5, progress_bar=False).run(
            jax.random.key(0), X, Y
        )
    with pytest.raises(ValueError, match=message):
        model.predict(X, Y, X)  # outside any handler: the init values, checked as well


def test_plain_kernel_leaves_put_by_tree_at_are_checked():
    kernel = eqx.tree_at(
        lambda k: k.parts[1].lengthscale, kernels.RBF(1.0, 1.0) + kernels.RBF(2.0, 1.0), -1.0
    )
    with pytest.raises(ValueError, match=r"`lengthscale` must be positive; got -1\.0"):
        kernel(X, X)
    with pytest.raises(ValueError, match=r"`lengthscale` must be positive"):
        predict(kernel, X, Y, X, 0.1)


def test_the_checks_add_nothing_to_the_compiled_program(monkeypatch):
    """The checks read only shapes, supports and concrete values: the traced program of the
    log density is the same with them and without them."""
    theta = {"rbf.lengthscale": 0.7, "rbf.amplitude": 1.0, "exactgp.noise": 0.1}

    def program():
        return str(jax.make_jaxpr(lambda t: log_density(exact_gp(), (X, Y), {}, t)[0])(theta))

    checked = program()
    monkeypatch.setattr(PyroxParam, "check", lambda *args, **kwargs: None)
    assert program() == checked


# ---------------------------------------------------------------------------
# Errors that say what to do.


def test_predict_after_the_model_call_in_one_model_names_one_call():
    model = exact_gp()

    def fit_and_predict(x, y):
        model(x, y)
        return model.predict(x, y, x)

    with pytest.raises(
        AssertionError, match=r"'rbf\.lengthscale' is registered twice.*pyrox_lite\.one_call\(\)"
    ):
        handlers.trace(handlers.seed(fit_and_predict, rng_seed=0)).get_trace(X, Y)

    def as_one_call(x, y):
        with pyrox_lite.one_call():
            model(x, y)
            return model.predict(x, y, x)

    trace = handlers.trace(handlers.seed(as_one_call, rng_seed=0)).get_trace(X, Y)
    ell = trace["rbf.lengthscale"]["value"]
    got = handlers.seed(as_one_call, rng_seed=0)(X, Y)
    want = predict(kernels.RBF(ell, 1.0), X, Y, X, 0.1)
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12)


def test_a_prior_draw_outside_any_handler_names_the_handler():
    with pytest.raises(
        RuntimeError, match=r"ExactGP\(x\) without y needs a NumPyro handler.*handlers\.seed"
    ):
        exact_gp()(X)


BOUNDARY = {
    "uniform-from-zero": PyroxParam(0.0, prior=dist.Uniform(0.0, 10.0)),
    "nonnegative": PyroxParam(0.0, constraint=constraints.nonnegative),
}


@pytest.mark.parametrize("param", BOUNDARY.values(), ids=BOUNDARY.keys())
def test_an_init_on_the_boundary_of_the_domain(param):
    """0 is in the support of these, but no lengthscale: the Gram matrix would be NaN."""
    with pytest.raises(
        ValueError, match=r"'lengthscale': init value 0\.0 is outside its domain Positive.*positive"
    ):
        gp.RBF(lengthscale=param)


def test_the_hint_names_the_domain():
    class Mixture(Parameterized):
        weight: PyroxParam = pyrox_lite.param_field(0.5, domain=constraints.unit_interval)

    with pytest.raises(
        ValueError, match=r"init value 2\.0 is outside its support UnitInterval"
    ) as error:
        Mixture(weight=PyroxParam(2.0))
    assert "a value in UnitInterval(lower_bound=0.0, upper_bound=1.0)" in str(error.value)
    assert "positive" not in str(error.value)


def test_sum_of_a_list_of_kernels_and_numbers_that_are_not_kernels():
    k1, k2 = kernels.RBF(1.0, 1.0), kernels.Matern32(2.0, 0.5)
    np.testing.assert_array_equal(sum([k1, k2])(X, X), (k1 + k2)(X, X))
    named = sum([gp.RBF(pyrox_name="a"), gp.Matern32(pyrox_name="b")])
    assert isinstance(named, gp.Sum) and len(named.site_names()) == 4
    for number_and_kernel in (lambda: 1.0 + k1, lambda: 2.0 * k1, lambda: 1 + gp.RBF()):
        with pytest.raises(TypeError, match="a number is not a kernel"):
            number_and_kernel()


def test_only_the_amplitude_may_be_left_out():
    """amplitude=None is a unit amplitude; any other hyperparameter left out is an error,
    not a silent 1."""
    with pytest.raises(ValueError, match=r"RBF has no parameter 'lengthscale'"):
        gp.RBF(lengthscale=None)(X, X)
    with pytest.raises(ValueError, match=r"Periodic has no parameter 'period'"):
        gp.Periodic(period=None)(X, X)
