"""The check against Stan (``make crosscheck``) can fail, and the verification page renders
its results.

Nothing here compiles or runs Stan. The comparison (``crosscheck/compare.py``) is tested on
synthetic draws and on draws stored in ``tests/data/crosscheck/`` from short Stan runs of the
Mauna Loa program: as written, and with a mistake planted in a copy of it (``crosscheck/run.py
--plant``): the trend amplitude's prior in the wrong units, and the medium-term kernel dropped.
The stored draws of the chapter's own posterior stand in for its artifact.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import arviz as az
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "crosscheck"
RESULTS = ROOT / "crosscheck" / "results.json"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


run = _load("crosscheck_run", ROOT / "crosscheck" / "run.py")
compare = run.compare
MAUNA_LOA = next(c for c in run.CHAPTERS if c.key == "mauna_loa")


# -- synthetic draws ------------------------------------------------------------------------


def normal_draws(mean=1.0, sd=0.2, chains=4, draws=1000, seed=0):
    return {"a": np.random.default_rng(seed).normal(mean, sd, size=(chains, draws))}


def test_one_distribution_agrees() -> None:
    rows = compare.compare(
        compare.summarise(normal_draws(seed=1)), compare.summarise(normal_draws(seed=2))
    )
    assert compare.disagreements("toy", "toy.nc", rows) == []
    assert abs(rows["a"]["z_mean"]) < 4 and 0.9 < rows["a"]["sd_ratio"] < 1.1


def test_shifted_mean_fails_naming_chapter_parameter_and_numbers() -> None:
    rows = compare.compare(
        compare.summarise(normal_draws(mean=1.05, seed=1)), compare.summarise(normal_draws(seed=2))
    )
    failed = compare.disagreements("toy", "toy.nc", rows)
    means = [f for f in failed if "means differ" in f]
    assert len(means) == 1, failed
    z = rows["a"]["z_mean"]
    assert z > 4 and means[0].startswith("toy (toy.nc), a: means differ by z = ")
    assert f"{z:+.2f}" in means[0] and f"{rows['a']['stan_mean']:.5g}" in means[0]


def test_wider_posterior_fails_on_the_sd_ratio() -> None:
    rows = compare.compare(
        compare.summarise(normal_draws(sd=0.24, seed=1)), compare.summarise(normal_draws(seed=2))
    )
    failed = compare.disagreements("toy", "toy.nc", rows)
    assert any(f.startswith("toy (toy.nc), a: sd ratio Stan/book = 1.2") for f in failed), failed
    assert any("5% quantiles differ" in f for f in failed), failed


def test_bad_draws_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        compare.summarise({"a": np.zeros(10)})
    with pytest.raises(ValueError, match="NaN"):
        compare.summarise({"a": np.full((2, 10), np.nan)})
    with pytest.raises(ValueError, match="same parameters"):
        compare.compare(compare.summarise(normal_draws()), {"b": {}})


def test_stan_diagnostics_fail() -> None:
    draws = normal_draws(chains=4, draws=200)
    draws["a"][0] += 1.0  # one chain elsewhere
    summary = compare.summarise(draws)
    rng = np.random.default_rng(3)
    energy = np.cumsum(rng.normal(size=(4, 200)), axis=1)  # a random walk: low E-BFMI
    divergent = np.zeros((4, 200))
    divergent[1, 5] = 1
    d = compare.stan_diagnostics(summary, divergent, energy)
    failed = "\n".join(compare.diagnostic_failures("toy", d))
    for text in ("largest R-hat", "bulk ESS", "tail ESS", "1 divergent", "E-BFMI"):
        assert text in failed, failed


# -- stored draws of planted mistakes ---------------------------------------------------------


def stored(stem: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"{stem}.npz") as f:
        return {k: f[k].astype(float) for k in f.files}


def book() -> dict:
    """The Mauna Loa chapter's posterior, as its artifact would hold it."""
    draws = stored("mauna_loa_book")
    diverging = draws.pop("diverging").astype(bool)
    return {"mauna_loa.nc": az.from_dict(posterior=draws, sample_stats={"diverging": diverging})}


def comparison_failures(stem: str) -> list[str]:
    _, failed = run.assess(MAUNA_LOA, stored(stem), book())
    return [f for f in failed if "Stan's" not in f]  # the comparisons, not diagnostics


def test_mauna_loa_program_agrees_with_the_chapter() -> None:
    _, failed = run.assess(MAUNA_LOA, stored("mauna_loa"), book())
    assert comparison_failures("mauna_loa") == []
    # the stored run is short: only its effective sample sizes may fall short
    assert all("ESS" in f for f in failed), failed


def test_planted_wrong_prior_fails() -> None:
    failed = comparison_failures("mauna_loa_wrong_prior")
    hit = [f for f in failed if f.startswith("mauna_loa (mauna_loa.nc), trend.amplitude: ")]
    assert any("means differ by z = +" in f for f in hit), failed


def test_planted_dropped_term_fails() -> None:
    failed = comparison_failures("mauna_loa_dropped_term")
    medium = {f.split(": ")[0] for f in failed if ", medium." in f}
    assert len(medium) >= 2, failed


@pytest.mark.parametrize("plant", sorted(run.PLANTS))
def test_plant_changes_the_current_program(plant, tmp_path) -> None:
    """The planted copy differs from the program as it is now by exactly that mistake."""
    copy = run.planted(MAUNA_LOA, plant, tmp_path)
    _, old, new, _ = run.PLANTS[plant]
    original = MAUNA_LOA.stan_file.read_text()
    assert copy.stan_file.read_text() == original.replace(old, new) != original


def test_crosscheck_exits_nonzero_listing_the_disagreement(monkeypatch, tmp_path, capsys) -> None:
    """`make crosscheck` with a planted mistake: exit status 1, the message on stderr, the
    failure in the results file."""

    def planted_run(chapter, *args, **kwargs):
        return run.assess(chapter, stored("mauna_loa_wrong_prior"), book())

    monkeypatch.setattr(run.stan_peer, "unavailable", lambda: None)
    monkeypatch.setattr(run.stan_peer, "versions", lambda: {"pystan": "test"})
    monkeypatch.setattr(run, "run_chapter", planted_run)
    out = tmp_path / "results.json"
    assert run.main(["--only", "mauna_loa", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Stan and the book disagree" in err
    assert "mauna_loa (mauna_loa.nc), trend.amplitude: means differ by z = " in err
    saved = json.loads(out.read_text())
    assert saved["passed"] is False and saved["chapters"]["mauna_loa"]["passed"] is False


def test_crosscheck_skips_without_a_compiler(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    out = tmp_path / "results.json"
    assert run.main(["--output", str(out)]) == 0
    said = capsys.readouterr().out
    assert "crosscheck skipped: no C++ compiler found" in said and not out.exists()


# -- the committed results and the page -------------------------------------------------------


def test_committed_results_cover_every_chapter_and_pass() -> None:
    """Every chapter whose notebook is in the book has results, and they passed."""
    results = json.loads(RESULTS.read_text())
    in_book = {
        c.key
        for c in run.CHAPTERS
        if all((ROOT / "notebooks" / nb).exists() for nb in c.notebook.split())
    }
    assert in_book <= set(results["chapters"]) <= {c.key for c in run.CHAPTERS}
    assert results["passed"] is True and results["failures"] == []
    for key, chapter in results["chapters"].items():
        expected = next(c for c in run.CHAPTERS if c.key == key)
        for artifact in expected.artifacts:
            assert set(chapter["comparisons"][artifact]["parameters"]) == set(expected.names)
    for name in ("pystan", "httpstan", "stanc", "cxx"):
        assert results["versions"][name]


@pytest.mark.parametrize("plant", sorted(run.PLANTS))
def test_committed_planted_runs_failed(plant) -> None:
    """The planted runs the page shows were runs of the current mistake, and failed."""
    saved = json.loads((ROOT / "crosscheck" / f"planted_{plant}.json").read_text())
    key, old, new, why = run.PLANTS[plant]
    assert saved["plant"] == {
        "name": plant,
        "chapter": key,
        "description": why,
        "replaced": old,
        "by": new,
    }
    assert saved["passed"] is False
    assert any(
        f.startswith(f"{key} ({key}.nc), ") and "differ by z" in f for f in saved["failures"]
    )


# -- the data each Stan program is given ------------------------------------------------------


def fake_artifact(x, y):
    return az.from_dict(
        posterior={"a": np.zeros((1, 2))},
        constant_data={"x": np.asarray(x)},
        observed_data={"y": np.asarray(y)},
    )


def test_latent_data_are_the_pages_and_nothing_else() -> None:
    x, y = run.COAL_YEARS[run.COAL_TRAIN], np.asarray(run.COAL_COUNTS)[run.COAL_TRAIN]
    data, _ = run.latent_data(fake_artifact(x, y))
    assert data["N"] == len(x) == 83 and data["y"][:3] == [4, 5, 1]  # 1853 held out
    assert run.latent_names()["gp.f@1960"] == "f.83"
    with pytest.raises(SystemExit, match="latent_gp"):
        run.latent_data(fake_artifact(x, y + 1))


def test_mauna_loa_data_must_be_the_chapters() -> None:
    t, co2 = run.co2_months()
    train = (t >= 1988) & (t < 1998)
    y = (co2[train] - co2[train].mean()) / co2[train].std()
    data, facts = run.mauna_loa_data(fake_artifact(t[train], y))
    assert data["N"] == 120 and abs(data["ppm"] * facts["sd"] - 1) < 1e-12
    with pytest.raises(SystemExit, match="mauna_loa"):
        run.mauna_loa_data(fake_artifact(t[train], y * 1.01))  # another scaling
