"""Every posterior the book publishes from NUTS, sampled again with Stan and compared.

Run from the repository root (``make crosscheck`` installs pystan first):

    make crosscheck                         # or: .venv/bin/python crosscheck/run.py
    .venv/bin/python crosscheck/run.py --only mauna_loa

For each chapter in ``CHAPTERS`` it

1. reads the chapter's posterior artifact (``notebooks/artifacts/*.nc``), executing the
   chapter's notebook with nbclient first when the artifact is missing;
2. builds the chapter's Stan program (``crosscheck/*.stan``, written from the page's
   equations) on the artifact's data, and checks that its log density, constants kept and
   no Jacobian, equals the log joint the chapter stored at its check points (1e-8 relative);
3. samples it: 4 chains of Stan's NUTS, with the chapter's draws and target acceptance
   rate (``Chapter``), Stan's defaults otherwise;
4. compares every hyperparameter with the chapter's draws (``crosscheck/compare.py``) and
   checks Stan's own diagnostics.

It writes ``crosscheck/results.json`` (which ``notebooks/10_verification.ipynb`` renders)
and exits with status 1, listing every disagreement, when any check fails. Without a C++
compiler (or without pystan) it says so and exits 0, writing nothing, as ``make bench``
skips Stan. BLAS runs on one thread (OPENBLAS_NUM_THREADS=1, set before NumPy loads).

``--plant NAME`` samples a copy of a program with a mistake planted in it (``PLANTS``) and
is expected to fail; the page shows the two planted runs, and the unit tests replay their
stored draws (tests/unit/test_crosscheck.py). They were made with

    python crosscheck/run.py --plant wrong_prior --warmup 300 --draws 300
        --output crosscheck/planted_wrong_prior.json --save-draws tests/data/crosscheck

the same for ``dropped_term``, and, for the unplanted draws, ``--only mauna_loa --warmup
300 --draws 300 --save-draws tests/data/crosscheck --output /tmp/short.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare  # noqa: E402
import stan_peer  # noqa: E402  (compiler, versions, quiet, compiler_output_captured)

NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = NOTEBOOKS / "artifacts"
RESULTS = HERE / "results.json"
LOG_DENSITY_RTOL = 1e-8


@dataclasses.dataclass(frozen=True)
class Chapter:
    key: str
    title: str
    notebook: str  # under notebooks/
    artifacts: tuple[str, ...]  # under notebooks/artifacts/, each from `notebook`s
    stan_file: Path
    names: dict[str, str]  # the artifact's variable -> Stan's parameter
    data: Callable  # idata -> (Stan's data dict, extra facts)
    draws: int = 1000  # per chain, after the warm-up
    warmup: int = 1000  # per chain
    extra: Callable | None = None  # (chapter, stan draws, idata, facts) -> dict
    adapt_delta: float = 0.8  # Stan's target acceptance rate (its default: 0.8)
    # the artifact's check points: constant_data `check_{key}` -> Stan's parameter (a
    # vector-valued one, such as a latent GP's whitened values, has shape (check, N));
    # None: the same as `names`
    checks: dict[str, str] | None = None


def pattern_data(idata):
    x = np.asarray(idata.constant_data["x"], dtype=float)
    y = np.asarray(idata.observed_data["y"], dtype=float)
    return {"N": int(x.size), "x": x.tolist(), "y": y.tolist()}, {}


# -- Mauna Loa: the data as the page describes them, from statsmodels ----------------------


def co2_months():
    """Monthly means of the weekly record (gaps dropped), each at mid-month, in years."""
    import statsmodels.api as sm

    weekly = sm.datasets.co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().dropna()
    t = (monthly.index.year + (monthly.index.month - 0.5) / 12).to_numpy()
    return t, monthly.to_numpy()


def mauna_loa_data(idata):
    t, co2 = co2_months()
    train, test = (t >= 1988) & (t < 1998), t >= 1998
    mean, sd = co2[train].mean(), co2[train].std()
    x = np.asarray(idata.constant_data["x"], dtype=float)
    y = np.asarray(idata.observed_data["y"], dtype=float)
    if not (
        np.allclose(x, t[train], rtol=0, atol=1e-12)
        and np.allclose(y, (co2[train] - mean) / sd, rtol=0, atol=1e-12)
    ):
        raise SystemExit(
            "mauna_loa: the artifact's data are not the months 1988-1997 of the "
            "statsmodels record, centred and scaled as the page says"
        )
    data = {"N": int(x.size), "t": x.tolist(), "y": y.tolist(), "ppm": 1.0 / sd, "period": 1.0}
    facts = {"x_test": t[test], "y_test": (co2[test] - mean) / sd, "sd": sd, "mean": mean}
    return data, facts


def co2_kernel(t1, t2, th):
    """The page's composite kernel (trend + seasonal cycle x decay + medium term)."""
    r = t1[:, None] - t2[None, :]
    r2 = r**2
    trend = th["trend_amplitude"] ** 2 * np.exp(-r2 / (2 * th["trend_lengthscale"] ** 2))
    seasonal = th["seasonal_amplitude"] ** 2 * np.exp(
        -2 * np.sin(np.pi * r) ** 2 / th["seasonal_lengthscale"] ** 2
        - r2 / (2 * th["decay_lengthscale"] ** 2)
    )
    a = th["medium_alpha"]
    medium = th["medium_amplitude"] ** 2 * (1 + r2 / (2 * a * th["medium_lengthscale"] ** 2)) ** (
        -a
    )
    return trend + seasonal + medium


def forecast(draws: dict[str, np.ndarray], x, y, facts, seed=3) -> dict:
    """The page's forecast of the held-out months from a sample of θ: every fifth draw,
    the Gaussian predictive of y* for each, twenty values of y* from each; RMSE of the
    mixture's mean, coverage and mean width of its central 95 % band (ppm)."""
    import scipy.linalg

    flat = {k: np.asarray(v).ravel() for k, v in draws.items()}
    kept = range(0, len(flat["noise"]), 5)
    xt, yt, sd = facts["x_test"], facts["y_test"], facts["sd"]
    means, sds = [], []
    for i in kept:
        th = {k: v[i] for k, v in flat.items()}
        noise2 = th["noise"] ** 2 + 1e-6
        chol = scipy.linalg.cho_factor(co2_kernel(x, x, th) + noise2 * np.eye(x.size), lower=True)
        ks = co2_kernel(xt, x, th)
        means.append(ks @ scipy.linalg.cho_solve(chol, y))
        var_f = co2_kernel(xt, xt, th).diagonal() - np.einsum(
            "ij,ji->i", ks, scipy.linalg.cho_solve(chol, ks.T)
        )
        sds.append(np.sqrt(var_f + th["noise"] ** 2))
    means, sds = np.array(means), np.array(sds)
    rng = np.random.default_rng(seed)
    y_star = rng.normal(means, sds, size=(20, *means.shape)).reshape(-1, xt.size)
    band = np.quantile(y_star, [0.025, 0.975], axis=0)
    inside = (yt >= band[0]) & (yt <= band[1])
    return {
        "draws_of_theta": len(kept),
        "rmse_ppm": float(sd * np.sqrt(np.mean((means.mean(0) - yt) ** 2))),
        "coverage_95": float(inside.mean()),
        "band_width_ppm": float(sd * np.mean(band[1] - band[0])),
        "mean_ppm_last_month": float(facts["mean"] + sd * means.mean(0)[-1]),
    }


def mauna_loa_extra(chapter, stan_draws, idata, facts):
    x = np.asarray(idata.constant_data["x"], dtype=float)
    y = np.asarray(idata.observed_data["y"], dtype=float)
    book = {chapter.names[k]: book_draws(idata, k) for k in chapter.names}
    return {
        "forecast": {
            "stan": forecast(stan_draws, x, y, facts),
            "book": forecast(book, x, y, facts),
            "held_out_months": int(facts["x_test"].size),
        }
    }


# -- the latent GP: the coal-mining explosions, as the page tallies them ----------------------

COAL_COUNTS = [
    4,
    5,
    4,
    1,
    0,
    4,
    3,
    4,
    0,
    6,
    3,
    3,
    4,
    0,
    2,
    6,
    3,
    3,
    5,
    4,  # 1851-1870
    5,
    3,
    1,
    4,
    4,
    1,
    5,
    5,
    3,
    4,
    2,
    5,
    2,
    2,
    3,
    4,
    2,
    1,
    3,
    2,  # 1871-1890
    2,
    1,
    1,
    1,
    1,
    3,
    0,
    0,
    1,
    0,
    1,
    1,
    0,
    0,
    3,
    1,
    0,
    3,
    2,
    2,  # 1891-1910
    0,
    1,
    1,
    1,
    0,
    1,
    0,
    1,
    0,
    0,
    0,
    2,
    1,
    0,
    0,
    0,
    1,
    1,
    0,
    2,  # 1911-1930
    3,
    3,
    1,
    1,
    2,
    1,
    1,
    1,
    1,
    2,
    3,
    3,
    0,
    0,
    0,
    1,
    4,
    0,
    0,
    0,  # 1931-1950
    1,
    0,
    0,
    0,
    0,
    0,
    1,
    0,
    0,
    1,
    0,
]  # 1951-1961
COAL_YEARS = np.arange(1851, 1962).astype(float)
COAL_TRAIN = (COAL_YEARS - 1853) % 4 != 0  # every fourth year from 1853 held out
LATENT_YEARS = (1851, 1880, 1910, 1940, 1960)  # where the page checks f


def latent_data(idata):
    x = np.asarray(idata.constant_data["x"], dtype=float)
    y = np.asarray(idata.observed_data["y"], dtype=float)
    if not (
        np.array_equal(x, COAL_YEARS[COAL_TRAIN])
        and np.array_equal(y, np.asarray(COAL_COUNTS, dtype=float)[COAL_TRAIN])
    ):
        raise SystemExit(
            "latent_gp: the artifact's data are not the page's training years and counts"
        )
    return {"N": int(x.size), "t": x.tolist(), "y": [int(v) for v in y]}, {}


def latent_names() -> dict[str, str]:
    train = COAL_YEARS[COAL_TRAIN].tolist()
    return {
        "kernel.lengthscale": "lengthscale",
        "kernel.amplitude": "amplitude",
        "gp.mean": "mu",
        **{f"gp.f@{year}": f"f.{train.index(year) + 1}" for year in LATENT_YEARS},
    }


MAUNA_LOA_NAMES = {
    "trend.lengthscale": "trend_lengthscale",
    "trend.amplitude": "trend_amplitude",
    "seasonal.lengthscale": "seasonal_lengthscale",
    "seasonal.amplitude": "seasonal_amplitude",
    "decay.lengthscale": "decay_lengthscale",
    "medium.lengthscale": "medium_lengthscale",
    "medium.alpha": "medium_alpha",
    "medium.amplitude": "medium_amplitude",
    "gp.noise": "noise",
}

CHAPTERS = [
    Chapter(
        key="patterns",
        title="The pattern pages (RBF kernel, synthetic data)",
        notebook="01_tree_at.ipynb 02_pyrox_module.ipynb 03_parameterized.ipynb",
        artifacts=("pattern1.nc", "pattern2.nc", "pattern3.nc"),
        stan_file=ROOT / "benchmarks" / "gp.stan",
        names={n: n for n in ("lengthscale", "amplitude", "noise")},
        data=pattern_data,
        # Cheap to sample, so the reference is made precise: the amplitude's long right
        # tail makes its sd a noisy estimate, and the pages' own draws bring enough noise.
        draws=5000,
    ),
    Chapter(
        key="mauna_loa",
        title="Mauna Loa CO₂ (composite kernel)",
        notebook="07_mauna_loa.ipynb",
        artifacts=("mauna_loa.nc",),
        stan_file=HERE / "mauna_loa.stan",
        names=MAUNA_LOA_NAMES,
        data=mauna_loa_data,
        extra=mauna_loa_extra,
    ),
    Chapter(
        key="latent_gp",
        title="A latent GP for counts (Poisson likelihood, whitened f)",
        notebook="08_latent_gp.ipynb",
        artifacts=("latent_gp.nc",),
        stan_file=HERE / "latent_gp.stan",
        names=latent_names(),
        data=latent_data,
        checks={
            "kernel.lengthscale": "lengthscale",
            "kernel.amplitude": "amplitude",
            "gp.mean": "mu",
            "gp.u": "u",
        },
        # as the chapter's NUTS; at Stan's default of 0.8, 6 of 4000 transitions diverged
        adapt_delta=0.95,
    ),
]


def available(chapter: Chapter) -> bool:
    """A chapter can be checked when its notebooks, or its artifacts, are there."""
    return all((NOTEBOOKS / nb).exists() for nb in chapter.notebook.split()) or all(
        (ARTIFACTS / a).exists() for a in chapter.artifacts
    )


# Mistakes planted in a copy of a chapter's Stan program (``--plant NAME``): each one a
# realistic slip that leaves a valid model, just not the chapter's. The unit tests check
# that the comparison catches each from draws a planted run stored.
PLANTS = {
    "wrong_prior": (
        "mauna_loa",
        "log(20 * ppm)",
        "log(20)",
        "the trend amplitude's prior median left in ppm, not converted to y's units",
    ),
    "dropped_term": (
        "mauna_loa",
        "trend + seasonal + medium",
        "trend + seasonal",
        "the medium-term (rational-quadratic) kernel dropped from the sum",
    ),
}


def planted(chapter: Chapter, plant: str, folder: Path) -> Chapter:
    """A copy of the chapter with the mistake ``plant`` written into its Stan program."""
    key, old, new, _ = PLANTS[plant]
    code = chapter.stan_file.read_text()
    if key != chapter.key or code.count(old) != 1:
        raise ValueError(
            f"cannot plant {plant!r} in {chapter.stan_file.name}: {old!r} must occur exactly once"
        )
    path = folder / f"{chapter.stan_file.stem}_{plant}.stan"
    path.write_text(code.replace(old, new))
    return dataclasses.replace(chapter, stan_file=path, title=f"{chapter.title}, {plant} planted")


# -- artifacts ----------------------------------------------------------------------------


def execute(notebook: str) -> None:
    """Run a chapter's notebook top to bottom in a fresh kernel (cwd notebooks/), which
    writes its artifact; its outputs are discarded."""
    import nbformat
    from nbclient import NotebookClient

    print(f"  executing notebooks/{notebook} to write its posterior artifact ...", flush=True)
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    env = {"CI": "true", "OPENBLAS_NUM_THREADS": "1"}
    with _environ(env):
        NotebookClient(
            nb,
            timeout=1800,
            kernel_name="python3",
            resources={"metadata": {"path": str(NOTEBOOKS)}},
        ).execute()


@contextlib.contextmanager
def _environ(values: dict):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def artifact(chapter: Chapter, name: str):
    import arviz as az

    path = ARTIFACTS / name
    if not path.exists():
        notebooks = chapter.notebook.split()
        index = chapter.artifacts.index(name)
        execute(notebooks[min(index, len(notebooks) - 1)])
        if not path.exists():
            raise SystemExit(f"{chapter.key}: running its notebook did not write {path}")
    return az.from_netcdf(path)


# -- Stan ---------------------------------------------------------------------------------


def build(chapter: Chapter, data: dict, seed: int):
    """Build the Stan program; the seconds the build took and whether it was compiled now
    (False: httpstan's cache held it)."""
    import httpstan.cache
    import httpstan.models
    import stan

    code = chapter.stan_file.read_text()
    name = httpstan.models.calculate_model_name(code)
    cached = any(httpstan.cache.model_directory(name).glob("*.so"))
    start = time.perf_counter()
    # setuptools leaves its object files under ./build: build in a scratch directory.
    with (
        stan_peer.compiler_output_captured(),
        stan_peer.quiet(),
        tempfile.TemporaryDirectory() as scratch,
        contextlib.chdir(scratch),
    ):
        posterior = stan.build(code, data=data, random_seed=seed)
    # pystan caches a seeded fit and would return it without sampling: drop it.
    import shutil

    shutil.rmtree(httpstan.cache.model_directory(name) / "fits", ignore_errors=True)
    return posterior, time.perf_counter() - start, not cached


def check_log_density(chapter: Chapter, posterior, idata, against: str) -> dict:
    """Stan's log density without the Jacobian (the density of θ itself, constants kept)
    against the chapter's log joint at its stored check points."""
    const = idata.constant_data
    checks = chapter.checks or chapter.names
    values = {stan: np.asarray(const[f"check_{k}"], dtype=float) for k, stan in checks.items()}
    expected = np.asarray(const["check_log_joint"], dtype=float)
    got = []
    with stan_peer.quiet():
        for i in range(expected.size):
            point = {stan: v[i].tolist() for stan, v in values.items()}
            z = posterior.unconstrain_pars(point)
            got.append(posterior.log_prob(z, adjust_transform=False))
    got = np.array(got)
    rel = np.abs(got - expected) / np.abs(expected)
    return {
        "against": against,
        "points": int(expected.size),
        "max_abs_diff": float(np.max(np.abs(got - expected))),
        "max_rel_diff": float(np.max(rel)),
        "passed": bool(np.max(rel) <= LOG_DENSITY_RTOL),
    }


def sample(posterior, chains: int, warmup: int, draws: int, names, adapt_delta: float):
    start = time.perf_counter()
    with stan_peer.quiet():
        fit = posterior.sample(
            num_chains=chains, num_warmup=warmup, num_samples=draws, delta=adapt_delta
        )
    seconds = time.perf_counter() - start
    frame = fit.to_frame()
    # pystan's frame interleaves the chains draw by draw (row = draw * chains + chain).
    by_chain = {
        col: frame[col].to_numpy().reshape(chains, draws, order="F")
        for col in list(names) + ["divergent__", "energy__", "stepsize__"]
    }
    # Each chain keeps one step size after warm-up: a wrong reshape would mix them.
    step = by_chain.pop("stepsize__")
    if not (step == step[:, :1]).all():
        raise RuntimeError("pystan's draws are not in the order expected (draw, chain)")
    return by_chain, seconds


def book_draws(idata, name: str) -> np.ndarray:
    """The artifact's draws of ``name``, shaped (chain, draw); ``"gp.f@1851"`` is the
    posterior variable ``gp.f`` where the coordinate of its last dimension is 1851 (a latent
    GP's f at one input)."""
    base, _, at = name.partition("@")
    value = idata.posterior[base]
    if at:
        value = value.sel({value.dims[-1]: float(at)})
    return np.asarray(value)


def assess(chapter: Chapter, by_chain: dict, books: dict) -> tuple[dict, list[str]]:
    """Stan's draws (``by_chain``: its parameters, ``divergent__`` and ``energy__``, each
    shaped (chain, draw)) against every artifact of the chapter: the comparison of each
    parameter, Stan's diagnostics, and a message for every failed check."""
    stan_draws = {v: np.asarray(by_chain[v]) for v in chapter.names.values()}
    stan_summary = compare.summarise(stan_draws)
    diagnostics = compare.stan_diagnostics(
        stan_summary, by_chain["divergent__"], by_chain["energy__"]
    )
    failures = compare.diagnostic_failures(chapter.key, diagnostics)
    comparisons = {}
    for name, idata in books.items():
        draws = {stan: book_draws(idata, k) for k, stan in chapter.names.items()}
        book_summary = compare.summarise(draws)
        rows = compare.compare(stan_summary, book_summary)
        rows = {
            k: rows[stan]
            | {
                "book_ess_bulk": book_summary[stan]["ess_bulk"],
                "book_ess_tail": book_summary[stan]["ess_tail"],
            }
            for k, stan in chapter.names.items()
        }
        failures += compare.disagreements(chapter.key, name, rows)
        shape = next(iter(draws.values())).shape
        comparisons[name] = {
            "book_chains": int(shape[0]),
            "book_draws": int(shape[0] * shape[1]),
            "book_divergences": int(np.asarray(idata.sample_stats["diverging"]).sum()),
            "parameters": rows,
        }
    return {
        "stan": {
            "diagnostics": diagnostics,
            "summary": {k: stan_summary[s] for k, s in chapter.names.items()},
        },
        "comparisons": comparisons,
    }, failures


# -- one chapter --------------------------------------------------------------------------


def run_chapter(
    chapter: Chapter,
    chains: int,
    seed: int,
    draws: int | None,
    warmup: int | None = None,
    gate: bool = True,
    save: Path | None = None,
) -> tuple[dict, list]:
    """Build, check and sample one chapter's program and compare; with ``gate`` a failed
    log-density check stops there (a planted run goes on to the posteriors); ``save``
    stores Stan's and the book's draws for the unit tests."""
    draws, warmup = draws or chapter.draws, warmup or chapter.warmup
    print(f"{chapter.key}: {chapter.title}", flush=True)
    books = {name: artifact(chapter, name) for name in chapter.artifacts}
    first = books[chapter.artifacts[0]]
    data, facts = chapter.data(first)
    for name, idata in books.items():
        if chapter.data(idata)[0] != data:
            raise SystemExit(f"{chapter.key}: {name} holds other data than {chapter.artifacts[0]}")
    posterior, build_s, compiled = build(chapter, data, seed)
    print(
        f"  built {chapter.stan_file.name} in {build_s:.0f} s "
        f"({'compiled' if compiled else 'from the cache'})",
        flush=True,
    )

    failures = []
    log_density = [
        check_log_density(chapter, posterior, idata, name) for name, idata in books.items()
    ]
    for check in log_density:
        print(
            f"  log density vs {check['against']}: largest relative difference "
            f"{check['max_rel_diff']:.1e} over {check['points']} points",
            flush=True,
        )
        if not check["passed"]:
            failures.append(
                f"{chapter.key} ({check['against']}): Stan's log density differs from the "
                f"chapter's log joint by {check['max_rel_diff']:.2e} relative "
                f"({check['max_abs_diff']:.3g} nats) at its check points "
                f"(must be <= {LOG_DENSITY_RTOL:g}): the two programs are not one model"
            )
    if failures and gate:  # posteriors of two different models: nothing more to learn
        return {"title": chapter.title, "log_density": log_density}, failures

    by_chain, sample_s = sample(
        posterior, chains, warmup, draws, chapter.names.values(), chapter.adapt_delta
    )
    print(
        f"  sampled {chains} chains x ({warmup} warm-up + {draws} draws) in {sample_s:.0f} s",
        flush=True,
    )
    assessed, failed = assess(chapter, by_chain, books)
    if save is not None:
        save_draws(save, chapter, by_chain, books)
    result = {
        "title": chapter.title,
        "notebooks": chapter.notebook.split(),
        "stan_file": (
            str(chapter.stan_file.relative_to(ROOT))
            if chapter.stan_file.is_relative_to(ROOT)
            else chapter.stan_file.name
        ),
        "compile_s": build_s,
        "compiled": compiled,
        "sampling_s": sample_s,
        "chains": chains,
        "warmup": warmup,
        "draws": draws,
        "adapt_delta": chapter.adapt_delta,
        "log_density": log_density,
    } | assessed
    failures += failed
    if chapter.extra is not None:
        stan_draws = {v: by_chain[v] for v in chapter.names.values()}
        result |= chapter.extra(chapter, stan_draws, first, facts)
    return result, failures


def save_draws(folder: Path, chapter: Chapter, by_chain: dict, books: dict) -> None:
    """Stan's draws and sampler statistics, and each artifact's draws, as float32 .npz
    (small enough to commit as test data)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = chapter.stan_file.stem
    np.savez_compressed(
        folder / f"{stem}.npz", **{k: np.asarray(v, dtype=np.float32) for k, v in by_chain.items()}
    )
    for name, idata in books.items():
        np.savez_compressed(
            folder / f"{Path(name).stem}_book.npz",
            diverging=np.asarray(idata.sample_stats["diverging"]),
            **{k: book_draws(idata, k).astype(np.float32) for k in chapter.names},
        )


def versions() -> dict:
    out = stan_peer.versions()
    for package in ("numpyro", "jax", "arviz", "numpy"):
        out[package] = importlib.metadata.version(package)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="chapter keys to run (default: all)")
    parser.add_argument("--draws", type=int, help="draws per chain (default: each chapter's)")
    parser.add_argument("--warmup", type=int, help="warm-up per chain (default: each chapter's)")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--plant",
        choices=sorted(PLANTS),
        help="sample a copy of the program with this mistake planted (its "
        "chapter only; expected to fail); results go to --output",
    )
    parser.add_argument(
        "--save-draws", type=Path, help="folder to store Stan's and the artifacts' draws in (.npz)"
    )
    args = parser.parse_args(argv)

    why = stan_peer.unavailable()
    if why is not None:
        print(
            f"crosscheck skipped: {why}. Nothing was compared and {args.output.name} is unchanged."
        )
        return 0
    unknown = set(args.only or ()) - {c.key for c in CHAPTERS}
    if unknown:
        parser.error(f"unknown chapter(s) {sorted(unknown)}; known: {[c.key for c in CHAPTERS]}")
    chosen = [c for c in CHAPTERS if not args.only or c.key in args.only]
    for chapter in [c for c in chosen if not available(c)]:
        print(
            f"{chapter.key}: skipped, neither notebooks/{chapter.notebook} nor its "
            f"artifact is in this checkout"
        )
        chosen.remove(chapter)
    scratch = tempfile.TemporaryDirectory()
    if args.plant:
        if args.output == RESULTS:
            parser.error("--plant needs --output: the committed results are not overwritten")
        chosen = [
            planted(c, args.plant, Path(scratch.name))
            for c in CHAPTERS
            if c.key == PLANTS[args.plant][0]
        ]

    start = time.perf_counter()
    results = {
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": versions(),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cores": os.cpu_count(),
            "load_average_start": os.getloadavg(),
        },
        "thresholds": {
            "z_max": compare.Z_MAX,
            "sd_ratio": list(compare.SD_RATIO),
            "quantiles": list(compare.QUANTILES),
            "r_hat_max": compare.RHAT_MAX,
            "ess_min": compare.ESS_MIN,
            "e_bfmi_min": compare.BFMI_MIN,
            "log_density_rtol": LOG_DENSITY_RTOL,
        },
        "chapters": {},
    }
    if args.plant:
        key, old, new, why = PLANTS[args.plant]
        results["plant"] = {
            "name": args.plant,
            "chapter": key,
            "description": why,
            "replaced": old,
            "by": new,
        }
    if args.only and args.output.exists():
        # a partial run keeps the other chapters' results, each with its own date
        results["chapters"] = json.loads(args.output.read_text()).get("chapters", {})
    for chapter in chosen:
        started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        result, failed = run_chapter(
            chapter,
            args.chains,
            args.seed,
            args.draws,
            args.warmup,
            gate=not args.plant,
            save=args.save_draws,
        )
        result |= {"created": started, "passed": not failed, "failures": failed}
        results["chapters"][chapter.key] = result
    failures = [f for ch in results["chapters"].values() for f in ch["failures"]]
    results["duration_s"] = time.perf_counter() - start
    results["machine"]["load_average_end"] = os.getloadavg()
    results["failures"] = failures
    results["passed"] = not failures
    args.output.write_text(json.dumps(results, indent=1, default=float) + "\n")
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    print(f"wrote {shown} in {results['duration_s']:.0f} s")
    if failures:
        print("\nStan and the book disagree:", file=sys.stderr)
        for line in failures:
            print(f"  - {line}", file=sys.stderr)
        return 1
    print("every published posterior agrees with Stan's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
