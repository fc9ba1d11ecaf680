"""Compare two samples of one posterior: Stan's draws against a chapter's.

Pure functions of arrays shaped (chain, draw); nothing here runs Stan or a notebook, so the
unit tests call them on stored or synthetic draws. ``crosscheck/run.py`` calls them on the
real ones.

For every parameter, with MCSE the Monte Carlo standard error that ArviZ estimates from
each sample's own effective sample size:

* the means: z = (mean_stan - mean_book) / sqrt(MCSE_stan^2 + MCSE_book^2), |z| < 4;
* the standard deviations: sd_stan / sd_book within [0.85, 1.15];
* the 5 % and 95 % quantiles: the same z, with ArviZ's MCSE of each quantile, |z| < 4.

Stan's own diagnostics must pass as well: R-hat <= 1.01, bulk and tail ESS >= 1000, no
divergent transition, E-BFMI >= 0.3 in every chain.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np

Z_MAX = 4.0
SD_RATIO = (0.85, 1.15)
QUANTILES = (0.05, 0.95)
RHAT_MAX = 1.01
ESS_MIN = 1000.0
BFMI_MIN = 0.3


def _dataset(draws: dict[str, np.ndarray]):
    for name, value in draws.items():
        value = np.asarray(value)
        if value.ndim != 2:
            raise ValueError(f"draws of {name!r} must have shape (chain, draw), got {value.shape}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"draws of {name!r} contain NaN or infinite values")
    return az.convert_to_dataset({k: np.asarray(v, dtype=float) for k, v in draws.items()})


def summarise(draws: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per parameter: mean, sd, 5 % and 95 % quantiles, each with its MCSE; ESS and R-hat."""
    ds = _dataset(draws)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = {
            "mcse_mean": az.mcse(ds, method="mean"),
            "mcse_sd": az.mcse(ds, method="sd"),
            "ess_bulk": az.ess(ds, method="bulk"),
            "ess_tail": az.ess(ds, method="tail"),
            "r_hat": az.rhat(ds),
        }
        for q in QUANTILES:
            stats[f"mcse_q{round(100 * q):02d}"] = az.mcse(ds, method="quantile", prob=q)
    out = {}
    for name, value in draws.items():
        flat = np.asarray(value, dtype=float).ravel()
        row = {
            "mean": float(flat.mean()),
            "sd": float(flat.std(ddof=1)),
            "draws": int(flat.size),
            "chains": int(np.shape(value)[0]),
        }
        for q in QUANTILES:
            row[f"q{round(100 * q):02d}"] = float(np.quantile(flat, q))
        row |= {key: float(stat[name]) for key, stat in stats.items()}
        out[name] = row
    return out


def _z(a: float, b: float, mcse_a: float, mcse_b: float) -> float:
    scale = float(np.hypot(mcse_a, mcse_b))
    if not scale > 0:
        return float("inf") if a != b else 0.0
    return (a - b) / scale


def compare(stan: dict[str, dict], book: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Stan's summary against the book's (both from ``summarise``), parameter by parameter."""
    missing = sorted(set(stan) ^ set(book))
    if missing:
        raise ValueError(f"the two samples do not have the same parameters: {missing}")
    rows = {}
    for name in stan:
        s, b = stan[name], book[name]
        row = {
            "stan_mean": s["mean"],
            "book_mean": b["mean"],
            "stan_mcse_mean": s["mcse_mean"],
            "book_mcse_mean": b["mcse_mean"],
            "z_mean": _z(s["mean"], b["mean"], s["mcse_mean"], b["mcse_mean"]),
            "stan_sd": s["sd"],
            "book_sd": b["sd"],
            "sd_ratio": s["sd"] / b["sd"] if b["sd"] > 0 else float("inf"),
            # shown beside the ratio: how far apart the two sds are in their own MCSEs
            "z_sd": _z(s["sd"], b["sd"], s["mcse_sd"], b["mcse_sd"]),
        }
        for q in QUANTILES:
            key = f"q{round(100 * q):02d}"
            row[f"stan_{key}"], row[f"book_{key}"] = s[key], b[key]
            row[f"z_{key}"] = _z(s[key], b[key], s[f"mcse_{key}"], b[f"mcse_{key}"])
        rows[name] = row
    return rows


def disagreements(chapter: str, against: str, rows: dict[str, dict]) -> list[str]:
    """One message per failed check, naming the chapter, the sample, the parameter and the
    numbers; empty when everything agrees."""
    out = []
    for name, r in rows.items():
        where = f"{chapter} ({against}), {name}"
        if not abs(r["z_mean"]) < Z_MAX:
            out.append(
                f"{where}: means differ by z = {r['z_mean']:+.2f} combined MCSE "
                f"(Stan {r['stan_mean']:.5g} ± {r['stan_mcse_mean']:.2g}, "
                f"book {r['book_mean']:.5g} ± {r['book_mcse_mean']:.2g}; |z| must be < {Z_MAX:g})"
            )
        if not SD_RATIO[0] <= r["sd_ratio"] <= SD_RATIO[1]:
            out.append(
                f"{where}: sd ratio Stan/book = {r['sd_ratio']:.3f} "
                f"(Stan {r['stan_sd']:.5g}, book {r['book_sd']:.5g}; "
                f"must be within {SD_RATIO[0]}-{SD_RATIO[1]})"
            )
        for q in QUANTILES:
            key = f"q{round(100 * q):02d}"
            if not abs(r[f"z_{key}"]) < Z_MAX:
                out.append(
                    f"{where}: {round(100 * q)}% quantiles differ by z = {r[f'z_{key}']:+.2f} "
                    f"MCSE (Stan {r[f'stan_{key}']:.5g}, book {r[f'book_{key}']:.5g}; "
                    f"|z| must be < {Z_MAX:g})"
                )
    return out


def stan_diagnostics(summary: dict[str, dict], divergent: np.ndarray, energy: np.ndarray) -> dict:
    """Stan's run: R-hat, ESS, divergences and E-BFMI, from its draws' summary and its
    sampler statistics (``divergent`` and ``energy``, shaped (chain, draw))."""
    bfmi = az.bfmi(np.asarray(energy, dtype=float))
    return {
        "r_hat_max": max(s["r_hat"] for s in summary.values()),
        "ess_bulk_min": min(s["ess_bulk"] for s in summary.values()),
        "ess_tail_min": min(s["ess_tail"] for s in summary.values()),
        "divergences": int(np.sum(divergent)),
        "e_bfmi": [float(v) for v in np.atleast_1d(bfmi)],
    }


def diagnostic_failures(chapter: str, diagnostics: dict) -> list[str]:
    d, out = diagnostics, []
    if not d["r_hat_max"] <= RHAT_MAX:
        out.append(
            f"{chapter}: Stan's largest R-hat is {d['r_hat_max']:.4f} (must be <= {RHAT_MAX})"
        )
    for kind in ("bulk", "tail"):
        if not d[f"ess_{kind}_min"] >= ESS_MIN:
            out.append(
                f"{chapter}: Stan's smallest {kind} ESS is {d[f'ess_{kind}_min']:.0f} "
                f"(must be >= {ESS_MIN:.0f}: sample more draws)"
            )
    if d["divergences"]:
        out.append(f"{chapter}: Stan reported {d['divergences']} divergent transitions (must be 0)")
    low = [round(v, 3) for v in d["e_bfmi"] if not v >= BFMI_MIN]
    if low:
        out.append(f"{chapter}: Stan's E-BFMI is {low} in some chains (must be >= {BFMI_MIN})")
    return out
