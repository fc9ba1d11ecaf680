"""Benchmark the book's GP model: per-gradient cost, NUTS efficiency, scaling, memory.

Run from the repository root, in one process (about six minutes on two cores):

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
    hyperparameters; ESS/s divides it by the total wall time of the four chains.
(c) Scaling: (a) against N, and the peak memory of each compiled gradient at
    N = 2000 from XLA's buffer assignment (``compiled.memory_analysis()``:
    arguments + outputs + temporaries; LAPACK's internal workspace is not counted).
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

RESULTS = Path(__file__).resolve().parent / "results.json"
SIZES = (100, 500, 1000, 2000)
BUDGET_S = {100: 6.0, 500: 10.0, 1000: 30.0, 2000: 60.0}  # timing seconds per size in (a)
INSTANCES = 2  # separate compilations of each model in (a)
THETA = np.array([1.0, 1.0, 0.1])  # lengthscale, amplitude, noise: where gradients are timed
PATTERNS = ("pattern1", "pattern2", "pattern3")
PEERS = ("numpyro_example", "tinygp", "gpjax")
LABELS = {
    "pattern1": "pattern 1 (eqx.tree_at)",
    "pattern2": "pattern 2 (PyroxModule)",
    "pattern3": "pattern 3 (Parameterized)",
    "floor": "autodiff floor (jax.numpy)",
    "value": "floor, value only",
    "numpyro_example": "NumPyro GP example",
    "tinygp": "tinygp",
    "gpjax": "GPJax",
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
            raise AssertionError(f"{name} disagrees with the floor by {gap:.1e}: not the same model")
        worst = max(worst, gap)
    return worst


def count_primitives(fn, arg, names=("cholesky", "triangular_solve", "dot_general")) -> dict[str, int]:
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
    """(wall clock, CPU seconds used by the whole machine, CPU seconds used by this process)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    busy = sum(int(v) for i, v in enumerate(fields) if i not in (3, 4))  # all but idle, iowait
    own = os.times()
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def other_load(before: tuple[float, float, float]) -> float:
    """CPUs kept busy by other processes since ``before``, on average: 0 on an idle machine,
    1 when other work used one whole core throughout."""
    after = cpu_seconds()
    return ((after[1] - before[1]) - (after[2] - before[2])) / (after[0] - before[0])


def time_call(fn, arg) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(arg))
    return time.perf_counter() - start


def gradient_costs(n: int, budget: float) -> dict:
    """Compile every model's value-and-gradient at size n, then time them interleaved.

    Each model is compiled INSTANCES times from a fresh trace: two compilations of one
    program can differ in speed by a percent or two (where code and buffers land in
    memory), and pooling the calls of both keeps that out of the comparison. One round
    calls every instance once, so a burst of load from elsewhere on the machine lands on
    all models alike; rounds repeat until ``budget`` seconds are spent (at least seven).
    """
    compiled, compile_s, memory, args = {}, {}, {}, {}
    for instance in range(INSTANCES):
        for name, (fn, arg) in potentials(n).items():
            start = time.perf_counter()
            compiled[name, instance] = jax.jit(fn).lower(arg).compile()
            compile_s.setdefault(name, []).append(time.perf_counter() - start)
            mem = compiled[name, instance].memory_analysis()
            memory[name] = int(mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes)
            args[name] = arg
    agreement = check_agreement({name: compiled[name, 0] for name in args}, args)
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
        t = np.asarray(times) * 1e6
        result[name] = {
            "median_us": float(np.median(t)),
            "ratio_to_floor": paired(name, "floor"),
            "ratio_to_pattern1": paired(name, "pattern1"),
            "q25_us": float(np.percentile(t, 25)),
            "q75_us": float(np.percentile(t, 75)),
            "calls": len(t),
            "compile_s": float(np.median(compile_s[name])),
            "memory_bytes": memory[name],
        }
    return {"models": result, "agreement": agreement, "rounds": rounds}


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


def nuts_runs(names, chains: int, warmup: int, draws: int, compiles: int = 3) -> dict:
    """Compile each model's chain `compiles` times, then run chain c of every model before
    chain c + 1 of any, so that load from elsewhere spreads over all models alike."""
    setups = {name: nuts_chain(name, warmup, draws, chains) for name in names}
    compile_times = {name: [] for name in names}
    compiled = {}
    for _ in range(compiles):
        for name, (_, compile_chain) in setups.items():
            start = time.perf_counter()
            compiled[name] = compile_chain()
            compile_times[name].append(time.perf_counter() - start)
    runs = {name: [] for name in names}
    for c in range(chains):
        for name, (states, _) in setups.items():
            print(f"  NUTS chain {c + 1}/{chains}, {name}", flush=True)
            start = time.perf_counter()
            out = jax.block_until_ready(compiled[name](states[c]))
            runs[name].append((time.perf_counter() - start, out))
    return {name: nuts_summary(name, runs[name], compile_times[name], warmup) for name in names}


def nuts_summary(name: str, runs: list, compile_times: list[float], warmup: int) -> dict:
    sites = models.MODELS[name].sites
    walls = [wall for wall, _ in runs]
    draws = {p: np.stack([np.exp(np.asarray(z[sites[p]][warmup:])) for _, (z, _, _) in runs]) for p in models.NAMES}
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
    for pkg in ("jax", "jaxlib", "numpyro", "equinox", "tinygp", "gpjax", "arviz", "numpy", "scipy"):
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
    out = {"gradient": rows}
    if nuts:
        base = nuts["numpyro_example"]["ess_per_s"]
        out["nuts"] = {
            **{f"{p} ESS/s / numpyro_example": nuts[p]["ess_per_s"] / base for p in PATTERNS},
            "pattern3/pattern1 compile (NUTS)": nuts["pattern3"]["compile_s"] / nuts["pattern1"]["compile_s"],
        }
    return out


def print_table(grad: dict, nuts: dict) -> None:
    names = [*PATTERNS, "floor", "value", *PEERS]
    sizes = list(grad)
    print("\nValue and gradient of the NUTS potential: median µs per call (median ratio to the floor's call in the same round)")
    print(f"{'':30s}" + "".join(f"{'N=' + str(n):>22s}" for n in sizes))
    for name in names:
        cells = []
        for n in sizes:
            m = grad[n]["models"]
            cells.append(f"{m[name]['median_us']:12.0f} ({m[name]['ratio_to_floor']:4.2f}x)")
        print(f"{LABELS[name]:30s}" + "".join(f"{c:>22s}" for c in cells))
    if not nuts:
        return
    print("\nNUTS on the book's data (N=100)")
    print(
        f"{'':30s}{'compile s':>10s}{'run s':>8s}{'min ESS':>9s}{'ESS/s':>8s}{'vs example':>11s}"
        f"{'steps':>7s}{'µs/grad':>9s}{'div':>5s}"
    )
    base = nuts["numpyro_example"]["ess_per_s"]
    for name in (*PATTERNS, *PEERS):
        r = nuts[name]
        print(
            f"{LABELS[name]:30s}{r['compile_s']:10.2f}{r['wall_s']:8.2f}{r['min_ess']:9.0f}"
            f"{r['ess_per_s']:8.0f}{r['ess_per_s'] / base:10.2f}x{r['leapfrog_per_draw']:7.1f}"
            f"{r['us_per_gradient']:9.0f}{r['divergences']:5d}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and short chains; no results.json")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = (100, 500) if args.quick else SIZES
    chains, warmup, draws = (1, 200, 200) if args.quick else (4, 500, 1000)

    started = time.time()
    load = {"start": os.getloadavg()}
    others = {}
    grad = {}
    for n in sizes:
        print(f"gradients at N={n} ...", flush=True)
        before = cpu_seconds()
        grad[n] = gradient_costs(n, budget=BUDGET_S[n] * (0.25 if args.quick else 1.0))
        others[f"gradients, N = {n}"] = other_load(before)
    grad_100 = potentials(100)
    primitives = {name: count_primitives(fn, arg) for name, (fn, arg) in grad_100.items()}
    print("NUTS ...", flush=True)
    before = cpu_seconds()
    nuts = nuts_runs((*PATTERNS, *PEERS), chains, warmup, draws)
    others["NUTS"] = other_load(before)
    load["end"] = os.getloadavg()

    print_table(grad, nuts)
    summary = targets(grad, nuts)
    print("\nTarget ratios:", json.dumps(summary, indent=1))
    results = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": time.time() - started,
        "machine": machine(),
        "load_average": load,
        "other_load": others,
        "theta": dict(zip(models.NAMES, THETA.tolist())),
        "labels": LABELS,
        "gradient": {str(n): res for n, res in grad.items()},
        "primitives_n100": primitives,
        "nuts": {"chains": chains, "warmup": warmup, "draws": draws, "models": nuts},
        "ratios": {"gradient": {str(n): r for n, r in summary["gradient"].items()}, "nuts": summary.get("nuts", {})},
    }
    if not args.quick:
        args.output.write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nwrote {args.output}")
    print(f"load average: start {load['start']}, end {load['end']}; {time.time() - started:.0f} s in all")
    print("CPUs busy with other work, per phase:", {k: round(v, 2) for k, v in others.items()})


if __name__ == "__main__":
    main()
