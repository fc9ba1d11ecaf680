"""Benchmark the book's GP model: per-gradient cost, NUTS efficiency, scaling, memory.

Run from the repository root, in one process (about six minutes on two cores, plus a
few minutes for Stan's C++ compile):

    make bench                      # or: .venv/bin/python benchmarks/run.py

It prints a table and writes benchmarks/results.json, which
notebooks/06_performance.ipynb renders. Everything runs in float64 on one CPU
core; the thread settings are below and are set before NumPy or JAX is imported,
and the process is pinned to one CPU.

What is measured (models in benchmarks/models.py; all share one log density):

(a) The NUTS potential's value and gradient over unconstrained θ, jitted, for
    the three patterns, the bare-``jax.numpy`` autodiff floor, NumPyro's GP example
    style, tinygp and GPJax, at N = 100, 500, 1000, 2000: median wall time of
    single calls with ``block_until_ready``, two compilations of each model, all
    interleaved round by round so that a change in machine load hits them alike;
    a ratio between two models is the median of the ratios of their calls in the
    same round.
(b) NUTS on the book's data (N = 100): each model's whole chain (warm-up and
    sampling, NUTS's ``sample`` in a ``lax.scan``) is compiled ahead of time, three
    times, the median being the compile time; the compiled chain then runs from four
    starting points, chain c of every model before chain c + 1 of any, and the wall
    time excludes compilation. ESS is ArviZ's bulk ESS, the minimum over the three
    hyperparameters; ESS/s divides it by the total wall time of the four chains. The
    CPU time of each chain is recorded too: on a busy machine a chain gets only part
    of its core, and CPU-µs per step is the cost of a step whatever that share was.
(c) Scaling: (a) against N, and the peak memory of each compiled gradient at
    N = 2000 from XLA's buffer assignment (``compiled.memory_analysis()``:
    arguments + outputs + temporaries; LAPACK's internal workspace is not counted).
(d) Stan (benchmarks/gp.stan through pystan 3; see stan_peer.py), when a C++ compiler
    and pystan are present: the compile time of a fresh build; its gradient at
    N = 100, 500, 1000 by two routes, timed in the rounds of (a) beside the JAX models,
    with the same calls at N = 1 as the per-call overhead; and its NUTS chains in (b),
    one chain per pystan call, chain c after chain c of every JAX model. Stan's worker
    processes inherit this process's CPU affinity: every chain of every sampler runs
    on the same one core, one chain at a time. Without a compiler Stan is skipped with
    a message and everything else runs.
"""

from __future__ import annotations

import os

# One thread everywhere, set before NumPy/SciPy/JAX load their libraries: OpenBLAS
# (NumPy, SciPy, and JAX's own LAPACK calls on CPU, which go through SciPy's OpenBLAS),
# OpenMP/MKL should anything use them, and XLA's Eigen thread pool for matrix products.
THREAD_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false",
    "JAX_PLATFORMS": "cpu",
}
os.environ.update(THREAD_ENV)
# XLA's CPU runtime also runs independent operations of one program concurrently on
# its own threads (seen here: 1.6 CPU-seconds per second of a gradient at N = 1000).
# Pinning the process to one CPU, which every thread started later inherits, keeps
# every measurement on one core.
CPU = max(os.sched_getaffinity(0))
os.sched_setaffinity(0, {CPU})

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import arviz as az  # noqa: E402
import jax.extend  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from numpyro.infer import NUTS  # noqa: E402
from numpyro.infer.util import initialize_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402
import stan_peer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results.json"
SIZES = (100, 500, 1000, 2000)
BUDGET_S = {100: 6.0, 500: 10.0, 1000: 30.0, 2000: 60.0}  # timing seconds per size in (a)
INSTANCES = 2  # separate compilations of each model in (a)
THETA = np.array([1.0, 1.0, 0.1])  # lengthscale, amplitude, noise: where gradients are timed
PATTERNS = ("pattern1", "pattern2", "pattern3")
PEERS = ("numpyro_example", "tinygp", "gpjax")
STAN_SIZES = (100, 500, 1000)  # sizes at which Stan's gradient is timed
STAN_ROUTES = ("stan_direct", "stan_pystan")
LABELS = {
    "pattern1": "pattern 1 (eqx.tree_at)",
    "pattern2": "pattern 2 (PyroxModule)",
    "pattern3": "pattern 3 (Parameterized)",
    "floor": "autodiff floor (jax.numpy)",
    "value": "floor, value only",
    "numpyro_example": "NumPyro GP example",
    "tinygp": "tinygp",
    "gpjax": "GPJax",
    "stan": "Stan (pystan 3)",
    "stan_direct": "Stan, extension module",
    "stan_pystan": "Stan, pystan grad_log_prob",
}


def book_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The book's data recipe; at n = 100 exactly the notebooks' data set."""
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-10.0, 10.0, n))
    y = np.sinc(x / np.pi) + 0.1 * rng.normal(size=n)
    return x, y


# ---------------------------------------------------------------------------
# (a) value and gradient of the potential


def potentials(n: int) -> dict[str, tuple]:
    """name -> (function of one argument, that argument at THETA), every model at size n."""
    x, y = book_data(n)
    z = np.log(THETA)
    out = {}
    for name, model in models.MODELS.items():
        info = initialize_model(jax.random.key(0), model.fn, model_args=(x, y))
        params = {model.sites[p]: jnp.asarray(z[i]) for i, p in enumerate(models.NAMES)}
        assert set(params) == set(info.param_info.z), f"{name}: sites {sorted(info.param_info.z)}"
        out[name] = (jax.value_and_grad(info.potential_fn), params)
    floor = models.floor_potential(x, y)
    out["floor"] = (jax.value_and_grad(floor), jnp.asarray(z))
    out["value"] = (floor, jnp.asarray(z))
    return out


def flat_gradient(name: str, grad) -> np.ndarray:
    if name in models.MODELS:
        sites = models.MODELS[name].sites
        return np.array([grad[sites[p]] for p in models.NAMES])
    return np.asarray(grad)


def check_agreement(compiled: dict, args: dict) -> float:
    """Every model's potential and gradient equal the floor's; returns the largest relative gap."""
    value, grad = compiled["floor"](args["floor"])
    worst = abs(float(compiled["value"](args["value"])) - float(value)) / abs(float(value))
    for name, fn in compiled.items():
        if name in ("floor", "value"):
            continue
        v, g = fn(args[name])
        gap = max(
            abs(float(v) - float(value)) / abs(float(value)),
            float(np.max(np.abs(flat_gradient(name, g) - np.asarray(grad))) / np.max(np.abs(grad))),
        )
        if gap > 1e-8:
            raise AssertionError(
                f"{name} disagrees with the floor by {gap:.1e}: not the same model"
            )
        worst = max(worst, gap)
    return worst


def count_primitives(
    fn, arg, names=("cholesky", "triangular_solve", "dot_general")
) -> dict[str, int]:
    """How often each primitive appears in the traced jaxpr, sub-jaxprs included."""
    counts = dict.fromkeys(names, 0)

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in counts:
                counts[eqn.primitive.name] += 1
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(arg).jaxpr)
    return counts


def cpu_seconds() -> tuple[float, float, float]:
    """(wall clock, CPU seconds used by the whole machine, CPU seconds used by this process
    and its children: Stan's compiler and sampling workers)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    busy = sum(int(v) for i, v in enumerate(fields) if i not in (3, 4))  # all but idle, iowait
    own = os.times()
    return (
        time.perf_counter(),
        busy / os.sysconf("SC_CLK_TCK"),
        own.user + own.system + stan_peer.children_cpu_seconds(),
    )


def other_load(before: tuple[float, float, float]) -> float:
    """CPUs kept busy by other processes since ``before``, on average: 0 on an idle machine,
    1 when other work used one whole core throughout."""
    after = cpu_seconds()
    return ((after[1] - before[1]) - (after[2] - before[2])) / (after[0] - before[0])


def time_call(fn, arg) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(arg))
    return time.perf_counter() - start


def stan_calls(n: int) -> dict:
    """Stan's gradient at size n by both routes, and the same calls at N = 1 (the per-call
    overhead), as functions of one ignored argument; checks Stan's log density first."""
    x, y = book_data(n)
    z = np.log(THETA)
    value, grad = jax.value_and_grad(models.floor_potential(x, y))(jnp.asarray(z))
    stan_value, stan_grad = stan_peer.log_density(x, y, z)
    gap = max(
        abs(stan_value + float(value)) / abs(float(value)),
        float(np.max(np.abs(stan_grad + np.asarray(grad))) / np.max(np.abs(grad))),
    )
    if gap > 1e-8:
        raise AssertionError(
            f"Stan's log density disagrees with the floor by {gap:.1e}: not the same model"
        )
    one = stan_peer.gradient_calls(*book_data(1), z)
    calls = {}
    for route, fn in stan_peer.gradient_calls(x, y, z).items():
        calls[f"stan_{route}"] = fn
        calls[f"stan_{route}_n1"] = one[route]
    return {name: (lambda _, fn=fn: fn(), None) for name, fn in calls.items()}, gap


def gradient_costs(n: int, budget: float, stan: bool = False) -> dict:
    """Compile every model's value-and-gradient at size n, then time them interleaved.

    Each model is compiled INSTANCES times from a fresh trace: two compilations of one
    program can differ in speed by a percent or two (where code and buffers land in
    memory), and pooling the calls of both keeps that out of the comparison. One round
    calls every instance once, so a burst of load from elsewhere on the machine lands on
    all models alike; rounds repeat until ``budget`` seconds are spent (at least seven).
    With ``stan``, Stan's gradient calls (see ``stan_calls``) join every round, twice
    each like the compiled models.
    """
    compiled, compile_s, memory, args = {}, {}, {}, {}
    for instance in range(INSTANCES):
        for name, (fn, arg) in potentials(n).items():
            start = time.perf_counter()
            compiled[name, instance] = jax.jit(fn).lower(arg).compile()
            compile_s.setdefault(name, []).append(time.perf_counter() - start)
            mem = compiled[name, instance].memory_analysis()
            memory[name] = int(
                mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
            )
            args[name] = arg
    agreement = check_agreement({name: compiled[name, 0] for name in args}, args)
    stan_gap = None
    if stan:
        extra, stan_gap = stan_calls(n)
        for name, (fn, arg) in extra.items():
            for instance in range(INSTANCES):
                compiled[name, instance] = fn
            args[name] = arg
    samples = {name: [] for name in args}
    keys, order = list(compiled), np.random.default_rng(n)
    start, rounds = time.perf_counter(), 0
    while time.perf_counter() - start < budget or rounds < 7:
        # A fresh order every round: what runs just before a call (and what it left in
        # the caches and the allocator) changes from round to round for every model.
        for i in order.permutation(len(keys)):
            name, instance = keys[i]
            samples[name].append(time_call(compiled[name, instance], args[name]))
        rounds += 1
    result = {}
    # Ratios of calls made in the same round: robust to slow drifts of load.
    paired = lambda a, b: float(np.median(np.asarray(samples[a]) / np.asarray(samples[b])))  # noqa: E731
    for name, times in samples.items():
        if name.endswith("_n1"):
            continue
        t = np.asarray(times) * 1e6
        result[name] = {
            "median_us": float(np.median(t)),
            "ratio_to_floor": paired(name, "floor"),
            "ratio_to_pattern1": paired(name, "pattern1"),
            "q25_us": float(np.percentile(t, 25)),
            "q75_us": float(np.percentile(t, 75)),
            "calls": len(t),
        }
        if name in compile_s:
            result[name] |= {
                "compile_s": float(np.median(compile_s[name])),
                "memory_bytes": memory[name],
            }
        else:
            # Stan: the same call at N = 1 in the same round is the overhead of the call.
            overhead = np.asarray(samples[f"{name}_n1"]) * 1e6
            corrected = t - overhead
            floor_us = np.asarray(samples["floor"]) * 1e6
            result[name] |= {
                "overhead_us": float(np.median(overhead)),
                "corrected_us": float(np.median(corrected)),
                "corrected_ratio_to_floor": float(np.median(corrected / floor_us)),
                "corrected_ratio_to_pattern1": float(
                    np.median(corrected / (np.asarray(samples["pattern1"]) * 1e6))
                ),
            }
    out = {"models": result, "agreement": agreement, "rounds": rounds}
    if stan_gap is not None:
        out["stan_agreement"] = stan_gap
    return out


# ---------------------------------------------------------------------------
# (b) NUTS


def nuts_chain(name: str, warmup: int, draws: int, chains: int):
    """NUTS for one model: the initial state of each chain, and a function that builds
    (traces, lowers and compiles) the whole chain anew each time it is called."""
    x, y = book_data(100)
    kernel = NUTS(models.MODELS[name].fn)
    keys = jax.random.split(jax.random.key(2024), chains)
    states = [kernel.init(k, warmup, model_args=(x, y)) for k in keys]

    def compile_chain():
        def chain(state):
            def step(state, _):
                state = kernel.sample(state, (x, y), {})
                return state, (state.z, state.diverging, state.num_steps)

            return jax.lax.scan(step, state, None, length=warmup + draws)[1]

        return jax.jit(chain).lower(states[0]).compile()

    return states, compile_chain


def nuts_runs(
    names, chains: int, warmup: int, draws: int, compiles: int = 3, stan_compile_s=False
) -> dict:
    """Compile each model's chain `compiles` times, then run chain c of every model before
    chain c + 1 of any, so that load from elsewhere spreads over all models alike.
    Unless ``stan_compile_s`` is False, Stan's chain c follows the JAX models' chain c
    (its compile time, measured before, is ``stan_compile_s``, or None when the model
    came from httpstan's cache)."""
    setups = {name: nuts_chain(name, warmup, draws, chains) for name in names}
    compile_times = {name: [] for name in names}
    compiled = {}
    for _ in range(compiles):
        for name, (_, compile_chain) in setups.items():
            start = time.perf_counter()
            compiled[name] = compile_chain()
            compile_times[name].append(time.perf_counter() - start)
    runs = {name: [] for name in names}
    cpu_s = {name: [] for name in names}  # CPU seconds this process used in each chain
    stan_runs = []
    x, y = book_data(100)
    for c in range(chains):
        for name, (states, _) in setups.items():
            print(f"  NUTS chain {c + 1}/{chains}, {name}", flush=True)
            cpu = os.times()
            start = time.perf_counter()
            out = jax.block_until_ready(compiled[name](states[c]))
            runs[name].append((time.perf_counter() - start, out))
            cpu_s[name].append(sum(os.times()[:2]) - sum(cpu[:2]))
        if stan_compile_s is not False:
            print(f"  NUTS chain {c + 1}/{chains}, stan", flush=True)
            stan_runs.append(
                stan_peer.sample_chain(x, y, seed=2024 + c, warmup=warmup, draws=draws)
            )
    out = {name: nuts_summary(name, runs[name], compile_times[name], warmup) for name in names}
    for name in names:
        # On a busy machine a chain gets only part of its core: the CPU time per step
        # is the cost of a step whatever share the chain was given.
        out[name] |= {
            "cpu_s": float(np.sum(cpu_s[name])),
            "cores_used": float(np.sum(cpu_s[name]) / out[name]["wall_s"]),
            "cpu_us_per_gradient": float(np.sum(cpu_s[name]) / out[name]["gradients"] * 1e6),
        }
    if stan_runs:
        out["stan"] = stan_summary(stan_runs, stan_compile_s)
    return out


def stan_summary(runs: list[dict], compile_s: float | None) -> dict:
    """The JAX rows' figures for Stan's chains. The run time is Stan's own clock (warm-up
    plus sampling, as the JAX chains' wall time); the wall time of the pystan calls, which
    adds starting httpstan, forking the worker and reading the draws back, is kept beside it."""
    draws = {p: np.stack([r["draws"][p] for r in runs]) for p in models.NAMES}
    ess = az.ess(az.convert_to_dataset(draws), method="bulk")
    min_ess = float(min(ess[p] for p in models.NAMES))
    walls = [r["stan_elapsed_s"]["Total"] for r in runs]
    calls = [r["call_wall_s"] for r in runs]
    steps = np.stack([r["n_leapfrog"] for r in runs])
    warmup = steps.shape[1] - draws["noise"].shape[1]
    wall, call = float(np.sum(walls)), float(np.sum(calls))
    cpu = float(sum(r["worker_cpu_s"] for r in runs))
    return {
        "compile_s": compile_s,
        "compile_runs_s": [] if compile_s is None else [compile_s],
        "wall_s": wall,
        "chain_wall_s": walls,
        "stan_elapsed_s": [r["stan_elapsed_s"] for r in runs],
        "call_wall_s": call,
        "chain_call_wall_s": calls,
        "worker_cpu_s": cpu,
        "cores_used": cpu / call,
        "cpu_us_per_gradient": cpu / steps.sum() * 1e6,
        "worker_affinity": sorted({c for r in runs for c in r["worker_affinity"]}),
        "gradients": int(steps.sum()),
        "us_per_gradient": wall / steps.sum() * 1e6,
        "ess_bulk": {p: float(ess[p]) for p in models.NAMES},
        "min_ess": min_ess,
        "ess_per_s": min_ess / wall,
        "ess_per_call_s": min_ess / call,
        "leapfrog_per_draw": float(steps[:, warmup:].mean()),
        "divergences": int(sum(r["divergent"].sum() for r in runs)),
        "stepsize": [r["stepsize"] for r in runs],
        "posterior_mean": {p: float(draws[p].mean()) for p in models.NAMES},
    }


def nuts_summary(name: str, runs: list, compile_times: list[float], warmup: int) -> dict:
    sites = models.MODELS[name].sites
    walls = [wall for wall, _ in runs]
    draws = {
        p: np.stack([np.exp(np.asarray(z[sites[p]][warmup:])) for _, (z, _, _) in runs])
        for p in models.NAMES
    }
    ess = az.ess(az.convert_to_dataset(draws), method="bulk")
    min_ess = float(min(ess[p] for p in models.NAMES))
    steps = np.stack([np.asarray(num_steps) for _, (_, _, num_steps) in runs])
    wall = float(np.sum(walls))
    return {
        "compile_s": float(np.median(compile_times)),
        "compile_runs_s": compile_times,
        "wall_s": wall,
        "chain_wall_s": walls,
        "gradients": int(steps.sum()),
        "us_per_gradient": wall / steps.sum() * 1e6,
        "ess_bulk": {p: float(ess[p]) for p in models.NAMES},
        "min_ess": min_ess,
        "ess_per_s": min_ess / wall,
        "leapfrog_per_draw": float(steps[:, warmup:].mean()),
        "divergences": int(sum(np.sum(d[warmup:]) for _, (_, d, _) in runs)),
        "posterior_mean": {p: float(draws[p].mean()) for p in models.NAMES},
    }


# ---------------------------------------------------------------------------
# Report


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in (
        "jax",
        "jaxlib",
        "numpyro",
        "equinox",
        "tinygp",
        "gpjax",
        "arviz",
        "numpy",
        "scipy",
        "pystan",
        "httpstan",
    ):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "thread_env": THREAD_ENV,
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "jax_backend": jax.default_backend(),
        "float64": bool(jax.config.jax_enable_x64),
    }


def targets(grad: dict, nuts: dict) -> dict:
    rows = {}
    for n, res in grad.items():
        m = res["models"]
        rows[n] = {
            "pattern2/pattern1": m["pattern2"]["ratio_to_pattern1"],
            "pattern3/pattern1": m["pattern3"]["ratio_to_pattern1"],
            **{f"{p}/floor": m[p]["ratio_to_floor"] for p in (*PATTERNS, *PEERS, "value")},
        }
        if "stan_direct" in m:
            rows[n] |= {
                "stan_direct/floor": m["stan_direct"]["ratio_to_floor"],
                "stan_direct corrected/floor": m["stan_direct"]["corrected_ratio_to_floor"],
                "stan_direct corrected/pattern1": m["stan_direct"]["corrected_ratio_to_pattern1"],
            }
    out = {"gradient": rows}
    if nuts:
        base = nuts["numpyro_example"]["ess_per_s"]
        out["nuts"] = {
            **{f"{p} ESS/s / numpyro_example": nuts[p]["ess_per_s"] / base for p in PATTERNS},
            "pattern3/pattern1 compile (NUTS)": nuts["pattern3"]["compile_s"]
            / nuts["pattern1"]["compile_s"],
        }
        if "stan" in nuts:
            out["nuts"] |= {
                "stan ESS/s / numpyro_example": nuts["stan"]["ess_per_s"] / base,
                **{
                    f"{p} ESS/s / stan": nuts[p]["ess_per_s"] / nuts["stan"]["ess_per_s"]
                    for p in PATTERNS
                },
                "stan µs per step / pattern1": nuts["stan"]["us_per_gradient"]
                / nuts["pattern1"]["us_per_gradient"],
            }
    return out


def print_table(grad: dict, nuts: dict) -> None:
    names = [*PATTERNS, "floor", "value", *PEERS]
    sizes = list(grad)
    print(
        "\nValue and gradient of the NUTS potential: median µs per call (median ratio to the floor's call in the same round)"
    )
    print(f"{'':30s}" + "".join(f"{'N=' + str(n):>22s}" for n in sizes))
    for name in names:
        cells = []
        for n in sizes:
            m = grad[n]["models"]
            cells.append(f"{m[name]['median_us']:12.0f} ({m[name]['ratio_to_floor']:4.2f}x)")
        print(f"{LABELS[name]:30s}" + "".join(f"{c:>22s}" for c in cells))
    for name in STAN_ROUTES:
        if name not in grad[sizes[0]]["models"]:
            continue
        for kind, key in (
            ("raw", "median_us"),
            ("call at N=1", "overhead_us"),
            ("corrected", "corrected_us"),
        ):
            cells = []
            for n in sizes:
                m = grad[n]["models"].get(name)
                ratio = (
                    ""
                    if m is None or kind != "corrected"
                    else f" ({m['corrected_ratio_to_floor']:4.2f}x)"
                )
                cells.append("-" if m is None else f"{m[key]:12.0f}{ratio}")
            route = "Stan module" if name == "stan_direct" else "Stan pystan"
            print(f"{route + ', ' + kind:30s}" + "".join(f"{c:>22s}" for c in cells))
    if not nuts:
        return
    print("\nNUTS on the book's data (N=100)")
    print(
        f"{'':30s}{'compile s':>10s}{'run s':>8s}{'min ESS':>9s}{'ESS/s':>8s}{'vs example':>11s}"
        f"{'steps':>7s}{'µs/grad':>9s}{'div':>5s}"
    )
    base = nuts["numpyro_example"]["ess_per_s"]
    for name in (*PATTERNS, *PEERS, "stan"):
        if name not in nuts:
            continue
        r = nuts[name]
        compile_s = float("nan") if r["compile_s"] is None else r["compile_s"]
        print(
            f"{LABELS[name]:30s}{compile_s:10.2f}{r['wall_s']:8.2f}{r['min_ess']:9.0f}"
            f"{r['ess_per_s']:8.0f}{r['ess_per_s'] / base:10.2f}x{r['leapfrog_per_draw']:7.1f}"
            f"{r['us_per_gradient']:9.0f}{r['divergences']:5d}"
        )
    if "stan" in nuts:
        r = nuts["stan"]
        print(
            f"Stan: run time is Stan's own clock; the pystan calls took {r['call_wall_s']:.2f} s "
            f"(ESS/s {r['ess_per_call_s']:.0f}); its workers used {r['cores_used']:.2f} CPU-s per s "
            f"on CPUs {r['worker_affinity']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and short chains; writes only an explicit --output",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help=f"default: {RESULTS} (not with --quick)"
    )
    parser.add_argument("--no-stan", action="store_true", help="leave Stan out")
    parser.add_argument(
        "--stan-cached",
        action="store_true",
        help="reuse httpstan's cached build of the Stan model (no compile time)",
    )
    args = parser.parse_args()
    sizes = (100, 500) if args.quick else SIZES
    chains, warmup, draws = (1, 200, 200) if args.quick else (4, 500, 1000)

    started = time.time()
    load = {"start": os.getloadavg()}
    others = {}
    stan_info = {"skipped": "--no-stan"} if args.no_stan else {}
    why_not = None if args.no_stan else stan_peer.unavailable()
    stan_compile_s = False  # False: no Stan in this run
    if why_not:
        stan_info = {"skipped": why_not}
        print(f"Stan SKIPPED: {why_not}. Everything else runs.", flush=True)
    elif not args.no_stan:
        fresh = not (args.stan_cached or args.quick)
        print(
            "Stan: building benchmarks/gp.stan"
            + (" from scratch (a few minutes) ..." if fresh else " ..."),
            flush=True,
        )
        before = cpu_seconds()
        stan_compile_s = stan_peer.compile_model(*book_data(100), fresh=fresh)
        others["Stan compile"] = other_load(before)
        stan_info = {
            "versions": stan_peer.versions(),
            "compile_s": stan_compile_s,
            "fresh_build": stan_compile_s is not None,
        }
        print(
            f"  built in {stan_compile_s:.0f} s"
            if stan_compile_s
            else "  reused httpstan's cached build",
            flush=True,
        )
    grad = {}
    for n in sizes:
        print(f"gradients at N={n} ...", flush=True)
        before = cpu_seconds()
        with_stan = stan_compile_s is not False and n in STAN_SIZES
        grad[n] = gradient_costs(
            n, budget=BUDGET_S[n] * (0.25 if args.quick else 1.0), stan=with_stan
        )
        others[f"gradients, N = {n}"] = other_load(before)
    grad_100 = potentials(100)
    primitives = {name: count_primitives(fn, arg) for name, (fn, arg) in grad_100.items()}
    print("NUTS ...", flush=True)
    before = cpu_seconds()
    nuts = nuts_runs((*PATTERNS, *PEERS), chains, warmup, draws, stan_compile_s=stan_compile_s)
    others["NUTS"] = other_load(before)
    load["end"] = os.getloadavg()

    print_table(grad, nuts)
    summary = targets(grad, nuts)
    print("\nTarget ratios:", json.dumps(summary, indent=1))
    results = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": time.time() - started,
        "machine": machine(),
        "load_average": load,
        "other_load": others,
        "theta": dict(zip(models.NAMES, THETA.tolist())),
        "labels": LABELS,
        "gradient": {str(n): res for n, res in grad.items()},
        "primitives_n100": primitives,
        "nuts": {"chains": chains, "warmup": warmup, "draws": draws, "models": nuts},
        "stan": stan_info,
        "ratios": {
            "gradient": {str(n): r for n, r in summary["gradient"].items()},
            "nuts": summary.get("nuts", {}),
        },
    }
    output = args.output or (None if args.quick else RESULTS)
    if output is not None:
        output.write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nwrote {output}")
    print(
        f"load average: start {load['start']}, end {load['end']}; {time.time() - started:.0f} s in all"
    )
    print("CPUs busy with other work, per phase:", {k: round(v, 2) for k, v in others.items()})


if __name__ == "__main__":
    main()
