"""The installed jax, jaxlib, equinox and numpyro satisfy what pyproject.toml declares.

pip checks this when it installs; this test catches an environment assembled otherwise
(a conda environment with other pins, a stale virtual environment), where the declared
lower bounds, which are the versions the tests were run against, would not hold.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DEPENDENCIES = [
    Requirement(r)
    for r in tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "dependencies"
    ]
]


@pytest.mark.parametrize("req", DEPENDENCIES, ids=str)
def test_installed_version_is_declared(req: Requirement) -> None:
    installed = version(req.name)
    assert req.specifier.contains(installed, prereleases=True), (
        f"{req.name} {installed} is installed, but pyproject.toml declares {req}: "
        f"reinstall with `pip install -e .` (or `make install`)"
    )


def test_every_dependency_has_a_lower_bound() -> None:
    for req in DEPENDENCIES:
        assert any(s.operator in (">=", "==", "~=") for s in req.specifier), (
            f"{req} has no lower bound"
        )


def test_jaxlib_matches_jax() -> None:
    """jax and jaxlib come from one release series (jax pins jaxlib to it)."""
    jax_minor, jaxlib_minor = (version(n).split(".")[:2] for n in ("jax", "jaxlib"))
    assert jax_minor == jaxlib_minor, f"jax {version('jax')} with jaxlib {version('jaxlib')}"
