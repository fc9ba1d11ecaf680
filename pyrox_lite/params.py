"""Parameter machinery: NumPyro sites that live with Equinox modules.

* :class:`PyroxModule` gives a module :meth:`~PyroxModule.pyrox_sample` and
  :meth:`~PyroxModule.pyrox_param`, which register NumPyro sites named
  ``"{scope}.{name}"``; ``scope`` is the module's ``pyrox_name`` or, by
  default, its lower-cased class name.
* :func:`pyrox_method` marks a method as one *call*: inside it, asking twice
  for the same site returns the same value instead of NumPyro's duplicate-site
  error, and two different modules that claim the same site name are reported.
* :class:`PyroxParam` is a declarative field value (init, prior, constraint) and
  :class:`Parameterized` resolves every such field: prior -> ``numpyro.sample``;
  no prior -> ``numpyro.param`` with its constraint; outside any NumPyro
  handler -> the init value, so the module also works as a plain function.

Nothing is stored outside the pytree. The per-call site cache is a context
variable that exists only while the outermost ``pyrox_method`` runs, so modules
stay ordinary immutable pytrees under ``jit``, ``vmap``, ``grad``, ``tree_map``,
``eqx.tree_at`` and copies.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
from typing import Any, Callable, Iterator, TypeVar

import equinox as eqx
import numpy as np
import numpyro
from jax import Array
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.constraints import Constraint

from ._checks import as_float, concrete

__all__ = ["PyroxModule", "pyrox_method", "one_call", "PyroxParam", "Parameterized"]

F = TypeVar("F", bound=Callable[..., Any])

# site name -> (module that registered it, value); set only during a pyrox_method call.
_CALL_SITES: contextvars.ContextVar[dict[str, tuple[object, Any]] | None] = contextvars.ContextVar(
    "pyrox_lite_call_sites", default=None
)


def _inside_handler() -> bool:
    """Whether any NumPyro effect handler (seed, trace, substitute, ...) is active."""
    return bool(numpyro.primitives._PYRO_STACK)


@contextlib.contextmanager
def one_call() -> Iterator[None]:
    """Treat everything inside the block as one call: each site is registered once.

    :func:`pyrox_method` uses this; so does :func:`pyrox_lite.predict`, which
    evaluates its kernel several times. Nested blocks share the outermost cache.
    """
    if _CALL_SITES.get() is not None:
        yield
        return
    token = _CALL_SITES.set({})
    try:
        yield
    finally:
        _CALL_SITES.reset(token)


def pyrox_method(fn: F) -> F:
    """Decorate a :class:`PyroxModule` method so that one call registers each site once.

    Nested ``pyrox_method`` calls (a GP calling its kernel, a method calling
    another) share the outermost call's cache.
    """

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with one_call():
            return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class PyroxModule(eqx.Module):
    """An :class:`equinox.Module` that can register NumPyro sites.

    Attributes:
        pyrox_name: scope of this module's site names (keyword-only). Defaults to
            the lower-cased class name; give two instances of one class distinct
            names when both appear in one model.
    """

    pyrox_name: str | None = eqx.field(default=None, static=True, kw_only=True)

    @property
    def scope(self) -> str:
        """Prefix of this module's site names."""
        return self.pyrox_name if self.pyrox_name is not None else type(self).__name__.lower()

    def site_name(self, name: str) -> str:
        """The full NumPyro site name of ``name``: ``"{scope}.{name}"``."""
        return f"{self.scope}.{name}"

    def _register(self, name: str, make: Callable[[str], Any]) -> Any:
        site = self.site_name(name)
        sites = _CALL_SITES.get()
        if sites is None:
            return make(site)
        if site in sites:
            owner, value = sites[site]
            if owner is not self:
                raise ValueError(
                    f"Site {site!r} is registered by two different modules "
                    f"({type(owner).__name__} and {type(self).__name__}). "
                    f"Give each module a distinct `pyrox_name=`."
                )
            return value
        value = make(site)
        sites[site] = (self, value)
        return value

    def pyrox_sample(self, name: str, prior: Distribution) -> Array:
        """Register (or, within one :func:`pyrox_method` call, reuse) the sample site ``"{scope}.{name}"``."""
        if not _inside_handler():
            raise RuntimeError(
                f"pyrox_sample({name!r}) needs a NumPyro handler to draw from its prior: call "
                f"the module inside a model run by MCMC/Predictive, or under "
                f"`numpyro.handlers.seed(..., rng_seed=0)`."
            )
        return self._register(name, lambda site: numpyro.sample(site, prior))

    def pyrox_param(
        self, name: str, init: ArrayLike, constraint: Constraint = constraints.real
    ) -> Array:
        """Register (or reuse) the learnable parameter site ``"{scope}.{name}"``."""
        return self._register(
            name, lambda site: numpyro.param(site, as_float(init), constraint=constraint)
        )


class PyroxParam(eqx.Module):
    """A parameter declared as a field value: init, optional prior, optional constraint.

    Args:
        init: initial (and plain-call) value.
        prior: a NumPyro distribution; if given, the parameter is a sample site.
        constraint: support of a learnable parameter; defaults to the prior's
            support, or to the real line when there is no prior.
    """

    init: Array = eqx.field(converter=as_float)
    prior: Distribution | None = None
    constraint: Constraint | None = None

    @property
    def support(self) -> Constraint:
        """The set the parameter lives in."""
        if self.constraint is not None:
            return self.constraint
        if self.prior is not None:
            return self.prior.support
        return constraints.real

    def check(self, name: str) -> None:
        """Raise a ``ValueError`` naming ``name`` if the init value is not finite or not in the support."""
        value = concrete(self.init)
        if value is None:
            return
        if not np.all(np.isfinite(value)):
            raise ValueError(f"Parameter {name!r}: init value {value} is not finite.")
        if not np.all(np.asarray(self.support(value))):
            raise ValueError(
                f"Parameter {name!r}: init value {value} is outside its support "
                f"{type(self.support).__name__.strip('_')}; "
                f"give an init inside the support (for example a positive value)."
            )


class Parameterized(PyroxModule):
    """A :class:`PyroxModule` whose :class:`PyroxParam` fields resolve themselves.

    Declare parameters as fields whose value is a ``PyroxParam``, then read them
    with :meth:`get_param` inside a :func:`pyrox_method`.
    """

    def __check_init__(self) -> None:
        for name in self.param_names():
            getattr(self, name).check(name)
        sites = self.site_names()
        clashes = sorted({s for s in sites if sites.count(s) > 1})
        if clashes:
            raise ValueError(
                f"{type(self).__name__}: site name(s) {clashes} are used by more than one "
                f"parameter; give the sub-modules distinct `pyrox_name=`."
            )

    def param_names(self) -> tuple[str, ...]:
        """Names of the fields that hold a :class:`PyroxParam`."""
        return tuple(
            f.name for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), PyroxParam)
        )

    def site_names(self) -> list[str]:
        """Every site this module and its ``Parameterized`` fields register, in field order."""
        names: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, PyroxParam):
                names.append(self.site_name(f.name))
            elif isinstance(value, Parameterized):
                names.extend(value.site_names())
        return names

    def get_param(self, name: str) -> Array:
        """The value of parameter ``name``: a sample site if it has a prior, else a
        ``numpyro.param``; its init value outside any NumPyro handler."""
        param = getattr(self, name, None)
        if not isinstance(param, PyroxParam):
            raise ValueError(
                f"{type(self).__name__} has no parameter {name!r}; "
                f"its parameters are {list(self.param_names())}."
            )
        if not _inside_handler():
            return param.init
        if param.prior is not None:
            return self.pyrox_sample(name, param.prior)
        return self.pyrox_param(name, param.init, param.support)
