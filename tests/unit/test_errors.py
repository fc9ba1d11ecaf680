"""Bad input: each error has the right type and a message that names the problem,
and it is raised before any inference starts."""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.infer import MCMC, NUTS

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
    "x-rank-3": (X[:, None, None], Y, X, r"`x` must have shape \(N,\) or \(N, D\); got shape \(6, 1, 1\)"),
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
    "x-features": (np.ones((6, 3)), Y, np.ones((4, 2)), r"same number of features as `x`; got 2 and 3"),
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


@pytest.mark.parametrize("x, y, x_test, message", BAD_TEST_INPUTS.values(), ids=BAD_TEST_INPUTS.keys())
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
    with pytest.raises(ValueError, match=r"`x1` must have shape \(N,\) or \(N, D\); got shape \(2, 2, 2\)"):
        fn(np.ones((2, 2, 2)), np.ones((3, 2)), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"`x2` must have shape \(N,\) or \(N, D\); got shape \(\)"):
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
    with pytest.raises(ValueError, match=r"observations must have 6 entries, one per row of `gram`"):
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
        ValueError, match=r"Parameter 'lengthscale': init value -1\.0 is outside its support Positive"
    ):
        kernel(lengthscale=make(-1.0))
    with pytest.raises(ValueError, match=r"Parameter 'amplitude': init value 0\.0 is outside its support"):
        kernel(amplitude=make(0.0))
    with pytest.raises(ValueError, match=r"Parameter 'noise': init value -0\.1 is outside its support"):
        gp.ExactGP(kernel(), noise=make(-0.1))
    with pytest.raises(ValueError, match=r"Parameter 'lengthscale': init value nan is not finite"):
        kernel(lengthscale=make(np.nan))


def test_unknown_parameter_name():
    message = r"RBF has no parameter 'lenghtscale'; its parameters are \['lengthscale', 'amplitude'\]"
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
    handlers.seed(SumOfTwo(SampledRBF(pyrox_name="a"), SampledRBF(pyrox_name="b")), rng_seed=0)(X, X)


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
    with pytest.raises(RuntimeError, match=r"pyrox_sample\('lengthscale'\) needs a NumPyro handler"):
        SampledRBF()(X, X)
