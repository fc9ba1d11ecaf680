"""The one private NumPyro name pyrox_lite reads, guarded.

``pyrox_lite.params._inside_handler`` asks whether any NumPyro effect handler is active,
to return a parameter's init value in a plain call and to refuse ``pyrox_sample`` outside
a handler. NumPyro has no public function for that question; its own ``sample`` and
``param`` read the handler stack ``numpyro.primitives._PYRO_STACK``, and so do we. If a
NumPyro release renames or restructures it, these tests fail and say what to change.
"""

from __future__ import annotations

import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

from pyrox_lite.params import _inside_handler

HINT = (
    "pyrox_lite.params._inside_handler reads numpyro.primitives._PYRO_STACK, NumPyro's stack of "
    f"active effect handlers; NumPyro {numpyro.__version__} changed it: update _inside_handler "
    "(or pin numpyro below this version in pyproject.toml and environment.yml)."
)


def test_the_handler_stack_exists():
    stack = getattr(numpyro.primitives, "_PYRO_STACK", None)
    assert isinstance(stack, list), HINT


@pytest.mark.parametrize(
    "handler",
    [
        lambda: handlers.seed(rng_seed=0),
        lambda: handlers.trace(),
        lambda: handlers.substitute(data={}),
        lambda: handlers.condition(data={}),
        lambda: handlers.block(),
    ],
    ids=["seed", "trace", "substitute", "condition", "block"],
)
def test_inside_handler_follows_numpyro(handler):
    assert not _inside_handler(), HINT
    with handler():
        assert _inside_handler(), HINT
        assert numpyro.primitives._PYRO_STACK, HINT
    assert not _inside_handler(), HINT


def test_numpyro_itself_decides_the_same_way():
    """NumPyro's own sample returns the observation unchanged exactly when no handler is
    active: the behaviour _inside_handler mirrors."""
    assert numpyro.sample("z", dist.Normal(), obs=3.0) == 3.0 and not _inside_handler(), HINT
    with handlers.trace() as tr, handlers.seed(rng_seed=0):
        assert _inside_handler(), HINT
        numpyro.sample("z", dist.Normal(), obs=3.0)
    assert "z" in tr, HINT
