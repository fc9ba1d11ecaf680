"""The parameter machinery: site names, the per-call site cache, how a PyroxParam
resolves, and modules that stay working under JAX transformations and copies."""

from __future__ import annotations

import copy

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.util import constrain_fn, log_density, potential_energy, unconstrain_fn
from scipy.stats import lognorm, multivariate_normal

from pyrox_lite import (
    JITTER,
    Parameterized,
    PyroxModule,
    PyroxParam,
    gp,
    kernels,
    predict,
    pyrox_method,
)

jax.config.update("jax_enable_x64", True)

PRIORS = {"lengthscale": (0.0, 1.0), "amplitude": (0.0, 1.0), "noise": (-2.0, 1.0)}


def lognormal(name: str, init: float) -> PyroxParam:
    return PyroxParam(init, prior=dist.LogNormal(*PRIORS[name]))


def bayesian_gp(case) -> gp.ExactGP:
    """The book's model as a Pattern 3 ExactGP, with the kernel of ``case``."""
    kernel = case.parameterized(
        lengthscale=lognormal("lengthscale", 0.7), amplitude=lognormal("amplitude", 1.3)
    )
    return gp.ExactGP(kernel, noise=lognormal("noise", 0.1))


def site_values(model, *args, rng_seed=0):
    """Name -> (type, value) of every latent site a seeded run of ``model`` registers."""
    trace = handlers.trace(handlers.seed(model, rng_seed=rng_seed)).get_trace(*args)
    return {
        name: (site["type"], site["value"])
        for name, site in trace.items()
        if site["type"] == "param" or (site["type"] == "sample" and not site["is_observed"])
    }


def log_joint_reference(case, x, y, theta):
    """log p(theta, y) from SciPy: LogNormal hyperpriors plus the Gaussian marginal."""
    ell, amp, noise = theta
    log_prior = sum(
        lognorm.logpdf(value, s=scale, scale=np.exp(loc))
        for value, (loc, scale) in zip(theta, PRIORS.values())
    )
    cov = case.gram(x, x, ell, amp) + (noise**2 + JITTER) * np.eye(len(x))
    return log_prior + multivariate_normal.logpdf(y, np.zeros(len(y)), cov)


def theta_sites(case, theta) -> dict:
    ell, amp, noise = theta
    return {f"{case.name}.lengthscale": ell, f"{case.name}.amplitude": amp, "exactgp.noise": noise}


THETA = (0.8, 1.1, 0.2)


# ---------------------------------------------------------------------------
# Modules used by the tests.


class SampledRBF(PyroxModule):
    """Pattern 2: a kernel that samples its own hyperparameters."""

    @pyrox_method
    def __call__(self, x1, x2):
        ell = self.pyrox_sample("lengthscale", dist.LogNormal(0.0, 1.0))
        amp = self.pyrox_sample("amplitude", dist.LogNormal(0.0, 1.0))
        return kernels.rbf(x1, x2, ell, amp)


class SumOfTwo(PyroxModule):
    """Calls two PyroxModule kernels inside one call."""

    first: PyroxModule
    second: PyroxModule

    @pyrox_method
    def __call__(self, x1, x2):
        return self.first(x1, x2) + self.second(x1, x2)


class Repeats(PyroxModule):
    """Asks for the same sites twice, with and without the decorator."""

    @pyrox_method
    def twice(self):
        return self.pyrox_sample("z", dist.Normal()), self.pyrox_sample("z", dist.Normal())

    def twice_undecorated(self):
        return self.pyrox_sample("z", dist.Normal()), self.pyrox_sample("z", dist.Normal())

    @pyrox_method
    def then_fail(self):
        self.pyrox_sample("z", dist.Normal())
        raise RuntimeError("stop")


class Shift(Parameterized):
    """A Parameterized module with one real-valued and one positive parameter."""

    offset: PyroxParam = eqx.field(default_factory=lambda: PyroxParam(0.5))
    scale: PyroxParam = eqx.field(
        default_factory=lambda: PyroxParam(2.0, constraint=constraints.positive)
    )

    @pyrox_method
    def __call__(self, x):
        return self.get_param("scale") * x + self.get_param("offset") + self.get_param("offset")


# ---------------------------------------------------------------------------
# Site names.


def test_default_scope_is_the_lower_cased_class_name(kernel_case, small_data):
    x, y, _ = small_data
    model = bayesian_gp(kernel_case)
    expected = [f"{kernel_case.name}.lengthscale", f"{kernel_case.name}.amplitude", "exactgp.noise"]
    assert model.site_names() == expected
    assert list(site_values(model, x, y)) == expected
    assert SampledRBF().site_name("lengthscale") == "sampledrbf.lengthscale"


def test_pyrox_name_overrides_the_scope(kernel_case, small_data):
    x, y, _ = small_data
    kernel = kernel_case.parameterized(lengthscale=lognormal("lengthscale", 0.7), pyrox_name="k")
    model = gp.ExactGP(kernel, noise=lognormal("noise", 0.1), pyrox_name="model", obs_site="obs")
    assert model.site_names() == ["k.lengthscale", "k.amplitude", "model.noise"]
    trace = handlers.trace(handlers.seed(model, rng_seed=0)).get_trace(x, y)
    assert list(trace) == ["k.lengthscale", "k.amplitude", "model.noise", "obs"]
    assert trace["obs"]["is_observed"]
    assert list(site_values(SampledRBF(pyrox_name="short"), x, x)) == [
        "short.lengthscale",
        "short.amplitude",
    ]


def test_two_instances_with_distinct_names_do_not_share_sites(small_data):
    x, _, _ = small_data
    model = SumOfTwo(SampledRBF(pyrox_name="short"), SampledRBF(pyrox_name="long"))
    trace = handlers.trace(handlers.seed(model, rng_seed=0)).get_trace(x, x)
    assert list(trace) == [
        "short.lengthscale",
        "short.amplitude",
        "long.lengthscale",
        "long.amplitude",
    ]
    v = {name: site["value"] for name, site in trace.items()}
    assert v["short.lengthscale"] != v["long.lengthscale"]
    assert v["short.amplitude"] != v["long.amplitude"]
    gram = handlers.substitute(handlers.seed(model, rng_seed=0), data=v)(x, x)
    want = kernels.rbf(x, x, v["short.lengthscale"], v["short.amplitude"]) + kernels.rbf(
        x, x, v["long.lengthscale"], v["long.amplitude"]
    )
    np.testing.assert_allclose(gram, want, rtol=1e-15)


def test_two_parameterized_kernels_with_distinct_names(kernel_case, small_data):
    x, _, _ = small_data

    class KernelSum(Parameterized):
        first: gp.Kernel
        second: gp.Kernel

        @pyrox_method
        def __call__(self, x1, x2):
            return self.first(x1, x2) + self.second(x1, x2)

    model = KernelSum(
        kernel_case.parameterized(
            lengthscale=PyroxParam(0.3), amplitude=PyroxParam(0.5), pyrox_name="a"
        ),
        kernel_case.parameterized(
            lengthscale=PyroxParam(3.0), amplitude=PyroxParam(2.0), pyrox_name="b"
        ),
    )
    assert model.site_names() == ["a.lengthscale", "a.amplitude", "b.lengthscale", "b.amplitude"]
    want = kernel_case.gram(x, x, 0.3, 0.5) + kernel_case.gram(x, x, 3.0, 2.0)
    np.testing.assert_allclose(model(x, x), want, rtol=1e-13)  # plain call: the init values
    sites = site_values(model, x, x)
    assert list(sites) == model.site_names()
    assert [value for _, value in sites.values()] == [0.3, 0.5, 3.0, 2.0]


# ---------------------------------------------------------------------------
# The per-call site cache.


def test_same_site_twice_in_one_call_is_one_site():
    trace = handlers.trace(handlers.seed(Repeats().twice, rng_seed=0)).get_trace()
    assert list(trace) == ["repeats.z"]
    first, second = handlers.seed(Repeats().twice, rng_seed=0)()
    assert first is second


def test_without_the_decorator_numpyro_rejects_the_duplicate():
    with pytest.raises(
        AssertionError, match=r"'repeats\.z' is registered twice.*unique names.*one_call"
    ):
        handlers.trace(handlers.seed(Repeats().twice_undecorated, rng_seed=0)).get_trace()


def test_get_param_twice_in_one_call(small_data):
    x, _, _ = small_data
    sites = site_values(Shift(), x)
    assert list(sites) == ["shift.scale", "shift.offset"]
    out = handlers.substitute(
        handlers.seed(Shift(), 0), data={"shift.offset": -1.0, "shift.scale": 3.0}
    )(x)
    np.testing.assert_allclose(out, 3.0 * x - 2.0, rtol=1e-15)


def test_cache_lives_for_one_call_only():
    module = Repeats()
    a, _ = handlers.seed(module.twice, rng_seed=0)()
    b, _ = handlers.seed(module.twice, rng_seed=1)()
    assert a != b
    with pytest.raises(RuntimeError, match="stop"):
        handlers.seed(module.then_fail, rng_seed=0)()
    c, _ = handlers.seed(module.twice, rng_seed=2)()  # nothing left over from the failed call
    assert c not in (a, b)

    def called_twice_in_one_model():
        module.twice()
        module.twice()

    with pytest.raises(AssertionError, match="unique names"):
        handlers.trace(handlers.seed(called_twice_in_one_model, rng_seed=0)).get_trace()


def test_nested_calls_share_the_cache(kernel_case, small_data):
    """ExactGP.predict calls its kernel three times (once under vmap): still one site each."""
    x, y, x_test = small_data
    model = bayesian_gp(kernel_case)
    trace = handlers.trace(handlers.seed(model.predict, rng_seed=0)).get_trace(x, y, x_test)
    assert sorted(trace) == sorted(model.site_names())
    v = {name: site["value"] for name, site in trace.items()}
    prediction = handlers.seed(model.predict, rng_seed=0)(x, y, x_test)
    plain = gp.ExactGP(
        kernel_case.parameterized(
            lengthscale=PyroxParam(v[f"{kernel_case.name}.lengthscale"]),
            amplitude=PyroxParam(v[f"{kernel_case.name}.amplitude"]),
        ),
        noise=PyroxParam(v["exactgp.noise"]),
    )
    for got, expected in zip(prediction, plain.predict(x, y, x_test)):
        np.testing.assert_allclose(got, expected, rtol=1e-14)


# ---------------------------------------------------------------------------
# How a PyroxParam resolves.


def test_prior_gives_a_sample_site_and_no_prior_a_param_site(kernel_case, small_data):
    x, _, _ = small_data
    kernel = kernel_case.parameterized(
        lengthscale=lognormal("lengthscale", 0.7),
        amplitude=PyroxParam(1.3, constraint=constraints.positive),
    )
    trace = handlers.trace(handlers.seed(kernel, rng_seed=0)).get_trace(x, x)
    ell_site, amp_site = (
        trace[f"{kernel_case.name}.lengthscale"],
        trace[f"{kernel_case.name}.amplitude"],
    )
    assert ell_site["type"] == "sample" and isinstance(ell_site["fn"], dist.LogNormal)
    assert amp_site["type"] == "param" and amp_site["kwargs"]["constraint"] is constraints.positive
    assert amp_site["value"] == 1.3
    real = handlers.trace(handlers.seed(Shift(), 0)).get_trace(x)["shift.offset"]
    assert real["type"] == "param" and real["kwargs"]["constraint"] is constraints.real
    assert PyroxParam(1.0, prior=dist.LogNormal(0.0, 1.0)).support is constraints.positive


def test_plain_call_uses_the_init_values(kernel_case, small_data):
    x, y, x_test = small_data
    kernel = kernel_case.parameterized(
        lengthscale=lognormal("lengthscale", 0.7), amplitude=lognormal("amplitude", 1.3)
    )
    np.testing.assert_array_equal(kernel(x, x_test), kernel_case.fn(x, x_test, 0.7, 1.3))
    assert kernel.get_param("lengthscale") == 0.7


def test_positive_param_stays_positive_under_svi(small_data):
    """A learnable positive parameter is optimised in unconstrained space (its log),
    so no update can make it non-positive; a real one is optimised as it is."""
    x, y, _ = small_data
    model = gp.ExactGP(gp.RBF())  # every hyperparameter a positive numpyro.param
    shift = Shift()

    def type_ii_ml(x, y):
        model(x, y)
        # Pulls scale * 1 + 2 * offset towards -40: the scale towards zero, the offset below it.
        numpyro.sample("shifted", dist.Normal(shift(jnp.ones(1))[0], 1.0), obs=-40.0)

    svi = SVI(type_ii_ml, lambda x, y: None, numpyro.optim.Adam(0.5), Trace_ELBO())
    result = svi.run(jax.random.key(0), 200, x, y, progress_bar=False)
    params, unconstrained = result.params, svi.optim.get_params(result.state.optim_state)
    assert 0 < params["shift.scale"] < 0.05
    assert params["shift.offset"] < -10.0
    assert unconstrained["shift.offset"] == params["shift.offset"]
    for name in ["rbf.lengthscale", "rbf.amplitude", "exactgp.noise", "shift.scale"]:
        assert params[name] > 0
        np.testing.assert_allclose(np.log(params[name]), unconstrained[name], rtol=1e-12)


def test_sample_sites_are_unconstrained_through_their_support(rbf_case, small_data):
    """Inference moves a positive sample site in log space: any unconstrained value
    maps back to a positive one, and the potential carries the log-Jacobian."""
    x, y, _ = small_data
    model = bayesian_gp(rbf_case)
    sites = theta_sites(rbf_case, THETA)
    unconstrained = unconstrain_fn(model, (x, y), {}, sites)
    for name, value in sites.items():
        np.testing.assert_allclose(unconstrained[name], np.log(value), rtol=1e-12)
    far = constrain_fn(model, (x, y), {}, {name: jnp.asarray(-30.0) for name in sites})
    np.testing.assert_allclose(list(far.values()), np.exp(-30.0), rtol=1e-12)
    np.testing.assert_allclose(
        -potential_energy(model, (x, y), {}, unconstrained),
        log_joint_reference(rbf_case, x, y, THETA) + sum(np.log(v) for v in sites.values()),
        rtol=1e-10,
    )


# ---------------------------------------------------------------------------
# Modules under JAX transformations and copies: same sites, same log density.


def log_joint_and_sites(model, x, y, theta):
    log_joint, trace = log_density(model, (x, y), {}, theta)
    names = [n for n, s in trace.items() if s["type"] == "sample" and not s["is_observed"]]
    return log_joint, {n: trace[n]["value"] for n in names}


def flatten_unflatten(module):
    leaves, treedef = jax.tree_util.tree_flatten(module)
    return jax.tree_util.tree_unflatten(treedef, leaves)


COPIES = {
    "itself": lambda m: m,
    "tree_map": lambda m: jax.tree_util.tree_map(lambda leaf: leaf, m),
    "tree_unflatten": flatten_unflatten,
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "tree_at": lambda m: eqx.tree_at(lambda g: g.kernel.lengthscale.init, m, jnp.asarray(2.5)),
}
TRANSFORMS = {"eager": lambda f: f, "jax.jit": jax.jit, "eqx.filter_jit": eqx.filter_jit}


@pytest.mark.parametrize("transform", TRANSFORMS.values(), ids=TRANSFORMS.keys())
@pytest.mark.parametrize("make_copy", COPIES.values(), ids=COPIES.keys())
def test_module_survives_transformations(rbf_case, make_copy, transform, small_data):
    x, y, _ = small_data
    model = make_copy(bayesian_gp(rbf_case))
    theta = theta_sites(rbf_case, THETA)
    log_joint, values = transform(log_joint_and_sites)(model, x, y, theta)
    assert sorted(values) == sorted(theta)
    np.testing.assert_allclose([values[n] for n in theta], THETA, rtol=1e-15)
    np.testing.assert_allclose(log_joint, log_joint_reference(rbf_case, x, y, THETA), rtol=1e-10)


def test_every_kernel_under_jit(kernel_case, small_data):
    x, y, _ = small_data
    theta = theta_sites(kernel_case, THETA)
    log_joint, values = jax.jit(log_joint_and_sites)(bayesian_gp(kernel_case), x, y, theta)
    assert sorted(values) == sorted(theta)
    np.testing.assert_allclose(log_joint, log_joint_reference(kernel_case, x, y, THETA), rtol=1e-10)


def test_prior_travels_inside_the_pytree(rbf_case, small_data):
    x, y, _ = small_data
    model = bayesian_gp(rbf_case)
    wider = eqx.tree_at(lambda g: g.kernel.lengthscale.prior, model, dist.LogNormal(1.0, 0.5))
    theta = theta_sites(rbf_case, THETA)
    change = jax.jit(
        lambda a, b: log_density(b, (x, y), {}, theta)[0] - log_density(a, (x, y), {}, theta)[0]
    )
    want = lognorm.logpdf(THETA[0], s=0.5, scale=np.e) - lognorm.logpdf(THETA[0], s=1.0)
    np.testing.assert_allclose(change(model, wider), want, rtol=1e-10)


def test_tree_map_maps_the_priors_too(rbf_case):
    """A prior is part of the pytree: its parameters are leaves, so tree_map rewrites them
    along with the values. (An identity map, as in COPIES above, cannot show this.)"""
    model = bayesian_gp(rbf_case)
    doubled = jax.tree_util.tree_map(lambda a: a * 2, model)
    assert doubled.noise.init == 0.2 and doubled.kernel.lengthscale.init == 1.4
    assert (doubled.noise.prior.loc, doubled.noise.prior.scale) == (
        -4.0,
        2.0,
    )  # LogNormal(-2, 1) -> (-4, 2)
    assert (doubled.kernel.amplitude.prior.loc, doubled.kernel.amplitude.prior.scale) == (0.0, 2.0)
    theta = theta_sites(rbf_case, THETA)
    x, y = np.linspace(-1.0, 1.0, 5), np.zeros(5)
    assert log_density(doubled, (x, y), {}, theta)[0] != log_density(model, (x, y), {}, theta)[0]


def test_mapping_only_the_values(rbf_case):
    """The idiom of the PyroxParam docstring: stop at each PyroxParam and replace its init."""
    model = bayesian_gp(rbf_case)
    doubled = jax.tree_util.tree_map(
        lambda p: eqx.tree_at(lambda q: q.init, p, p.init * 2) if isinstance(p, PyroxParam) else p,
        model,
        is_leaf=lambda node: isinstance(node, PyroxParam),
    )
    assert (doubled.noise.init, doubled.kernel.lengthscale.init, doubled.kernel.amplitude.init) == (
        0.2,
        1.4,
        2.6,
    )
    for param in (doubled.noise, doubled.kernel.lengthscale, doubled.kernel.amplitude):
        assert param.prior is not None
    assert (doubled.noise.prior.loc, doubled.noise.prior.scale) == (-2.0, 1.0)
    assert (doubled.kernel.lengthscale.prior.loc, doubled.kernel.lengthscale.prior.scale) == (
        0.0,
        1.0,
    )
    assert "is_leaf=lambda node: isinstance(node, PyroxParam)" in PyroxParam.__doc__


@pytest.mark.parametrize("vmap", [jax.vmap, eqx.filter_vmap], ids=["jax.vmap", "eqx.filter_vmap"])
def test_vmap_over_theta(rbf_case, vmap, small_data):
    x, y, _ = small_data
    thetas = np.array([THETA, (0.4, 2.0, 0.05), (3.0, 0.5, 0.5)])
    batch = theta_sites(rbf_case, thetas.T)
    log_joint = vmap(lambda m, th: log_density(m, (x, y), {}, th)[0], in_axes=(None, 0))
    log_joints = eqx.filter_jit(log_joint)(bayesian_gp(rbf_case), batch)
    want = [log_joint_reference(rbf_case, x, y, theta) for theta in thetas]
    np.testing.assert_allclose(log_joints, want, rtol=1e-10)


def test_grad_of_the_log_density_through_the_module(kernel_case, small_data):
    x, y, _ = small_data
    names = list(theta_sites(kernel_case, THETA))

    def log_joint(model, theta):
        return log_density(model, (x, y), {}, dict(zip(names, theta)))[0]

    grad = jax.jit(jax.grad(log_joint, argnums=1))(bayesian_gp(kernel_case), jnp.asarray(THETA))
    h = 1e-6
    fd = [
        (
            log_joint_reference(kernel_case, x, y, np.add(THETA, h * e))
            - log_joint_reference(kernel_case, x, y, np.subtract(THETA, h * e))
        )
        / (2 * h)
        for e in np.eye(3)
    ]
    np.testing.assert_allclose(grad, fd, rtol=1e-6)


def test_grad_with_respect_to_the_module(rbf_case, small_data):
    """Outside handlers the init values are ordinary leaves: filter_grad reaches them."""
    x, y, x_test = small_data
    model = gp.ExactGP(
        rbf_case.parameterized(lengthscale=PyroxParam(0.8), amplitude=PyroxParam(1.1))
    )
    grads = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.sum(m.predict(x, y, x_test).mean)))(model)

    def reference(ell, amp, noise):
        return jnp.sum(predict(kernels.RBF(ell, amp), x, y, x_test, noise).mean)

    want = jax.jit(jax.grad(reference, argnums=(0, 1, 2)))(0.8, 1.1, 0.1)
    got = (grads.kernel.lengthscale.init, grads.kernel.amplitude.init, grads.noise.init)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_predict_registers_a_sampling_kernels_sites_once(small_data):
    """predict() evaluates its kernel three times as one call, so a Pattern 2 kernel
    draws its hyperparameters once and every Gram block uses the same values."""
    x, y, x_test = small_data
    kernel = SampledRBF()
    trace = handlers.trace(handlers.seed(predict, rng_seed=0)).get_trace(kernel, x, y, x_test, 0.1)
    assert list(trace) == ["sampledrbf.lengthscale", "sampledrbf.amplitude"]
    ell, amp = (trace[name]["value"] for name in trace)
    got = handlers.seed(predict, rng_seed=0)(kernel, x, y, x_test, 0.1)
    want = predict(kernels.RBF(ell, amp), x, y, x_test, 0.1)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-14)


# ---------------------------------------------------------------------------
# The shape of a sampled parameter is the init's.


def test_a_vector_init_expands_a_scalar_prior(two_feature_data):
    """One lengthscale per feature (ARD) with one prior for all: the site has the init's
    shape, and its log density is the sum over the features."""
    x, y, _ = two_feature_data
    model = gp.ExactGP(gp.RBF(lengthscale=PyroxParam(jnp.ones(2), prior=dist.LogNormal(0.0, 1.0))))
    site = handlers.trace(handlers.seed(model, rng_seed=0)).get_trace(x, y)["rbf.lengthscale"]
    assert site["value"].shape == (2,)
    value = np.array([0.5, 2.0])
    np.testing.assert_allclose(
        site["fn"].log_prob(value), np.sum(lognorm.logpdf(value, s=1.0)), rtol=1e-12
    )


def test_a_prior_that_does_not_fit_the_init_is_an_error():
    message = (
        r"Parameter 'lengthscale': the init value has shape \(2,\), but the prior has shape \(3,\)"
    )
    with pytest.raises(ValueError, match=message):
        gp.RBF(lengthscale=PyroxParam(jnp.ones(2), prior=dist.LogNormal(jnp.zeros(3), 1.0)))
    with pytest.raises(
        ValueError, match=r"init value has shape \(\), but the prior has shape \(2,\)"
    ):
        gp.RBF(lengthscale=PyroxParam(1.0, prior=dist.LogNormal(jnp.zeros(2), 1.0)))
