"""Parameter machinery: NumPyro sites that live with Equinox modules.

* :class:`PyroxModule` registers sites ``"{scope}.{name}"`` (scope: ``pyrox_name``, or the
  lower-cased class name) with :meth:`~PyroxModule.pyrox_sample` and
  :meth:`~PyroxModule.pyrox_param`.
* :func:`pyrox_method` and :func:`one_call` make one *call*: asking twice for a site returns the
  same value, and two modules that claim one site name are reported.
* :class:`PyroxParam` declares a field value (init, prior, constraint), which
  :class:`Parameterized` resolves: prior -> ``numpyro.sample``; no prior -> ``numpyro.param``;
  outside any NumPyro handler -> the init value. :func:`param_field` gives such a field a
  *domain* (positive for a lengthscale) that a prior or constraint may not reach outside.

Nothing is stored outside the pytree: the per-call site cache is a context variable that exists
only while the outermost call runs, so modules stay ordinary immutable pytrees under ``jit``,
``vmap``, ``grad``, ``tree_map`` and ``eqx.tree_at``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import equinox as eqx
import numpy as np
import numpyro
from jax import Array
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.constraints import Constraint

from ._checks import as_float, concrete

__all__ = ["PyroxModule", "pyrox_method", "one_call", "PyroxParam", "Parameterized", "param_field"]

F = TypeVar("F", bound=Callable[..., Any])

# site name -> (module that registered it, value); set only during a pyrox_method call.
_CALL_SITES: contextvars.ContextVar[dict[str, tuple[object, Any]] | None] = contextvars.ContextVar(
    "pyrox_lite_call_sites", default=None
)


def _inside_handler() -> bool:
    """Whether any NumPyro effect handler (seed, trace, substitute, ...) is active. NumPyro has
    no public way to ask: this reads its handler stack, ``numpyro.primitives._PYRO_STACK``, as
    its own ``sample`` does (``tests/unit/test_numpyro_internals.py`` watches the attribute)."""
    return bool(numpyro.primitives._PYRO_STACK)


def require_handler(what: str) -> None:
    """Raise unless a NumPyro handler is active, for ``what``, a random draw from a prior."""
    if not _inside_handler():
        raise RuntimeError(
            f"{what} needs a NumPyro handler to draw from its prior: call the module inside a "
            f"model run by MCMC/Predictive, or under `numpyro.handlers.seed(..., rng_seed=0)`."
        )


@contextlib.contextmanager
def one_call() -> Iterator[None]:
    """Treat everything inside the block as one call: each site is registered once. Nested
    blocks (and :func:`pyrox_method` calls) share the outermost block's cache."""
    token = _CALL_SITES.set({}) if _CALL_SITES.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _CALL_SITES.reset(token)


def pyrox_method(fn: F) -> F:
    """Decorate a :class:`PyroxModule` method so that one call registers each site once."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with one_call():
            return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class PyroxModule(eqx.Module):
    """An :class:`equinox.Module` that can register NumPyro sites.

    Attributes:
        pyrox_name: scope of the site names (keyword-only); the lower-cased class name by
            default. Give two instances of one class in one model distinct names.
    """

    pyrox_name: str | None = eqx.field(default=None, static=True, kw_only=True)

    @property
    def scope(self) -> str:
        return self.pyrox_name if self.pyrox_name is not None else type(self).__name__.lower()

    def site_name(self, name: str) -> str:
        return f"{self.scope}.{name}"

    def _register(self, name: str, make: Callable[[str], Any]) -> Any:
        site = self.site_name(name)
        sites = _CALL_SITES.get()
        if sites is not None and site in sites:
            owner, value = sites[site]
            if owner is not self:
                raise ValueError(
                    f"Site {site!r} is registered by two different modules "
                    f"({type(owner).__name__} and {type(self).__name__}). "
                    f"Give each module a distinct `pyrox_name=`."
                )
            return value
        try:
            value = make(site)
        except AssertionError as err:  # NumPyro's trace refuses a second site of one name;
            if "unique names" not in str(err):  # the same type, with what to do
                raise
            raise AssertionError(
                f"Site {site!r} is registered twice in one run of the model ({err}). Two calls "
                f"of a module in one model, such as `gp(x, y)` and then `gp.predict(x, y, "
                f"x_test)`, each register its sites; make them one call, `with "
                f"pyrox_lite.one_call(): ...`, so that the second reuses the first's values."
            ) from err
        if sites is not None:
            sites[site] = (self, value)
        return value

    def pyrox_sample(self, name: str, prior: Distribution) -> Array:
        """Register (or, within one call, reuse) the sample site ``"{scope}.{name}"``."""
        require_handler(f"pyrox_sample({name!r})")
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
        constraint: support of a learnable parameter; defaults to the prior's support, else
            to the domain its field declares (see :func:`param_field`), else the real line.

    Its leaves are ``init`` *and the prior's parameters* (a NumPyro distribution is a pytree),
    which keeps a prior inside the module under ``jit``, ``vmap`` and copies; so
    ``jax.tree_util.tree_map(f, module)`` maps the priors' ``loc`` and ``scale`` too. To map
    the values only, stop at each ``PyroxParam`` and rebuild it::

        jax.tree_util.tree_map(
            lambda p: (
                eqx.tree_at(lambda q: q.init, p, f(p.init)) if isinstance(p, PyroxParam) else p
            ),
            module,
            is_leaf=lambda node: isinstance(node, PyroxParam),
        )
    """

    init: Array = eqx.field(converter=as_float)
    prior: Distribution | None = None
    constraint: Constraint | None = None

    @property
    def support(self) -> Constraint:
        """The set the parameter lives in, whatever field holds it."""
        return self._support_in(None)

    def _support_in(self, domain: Constraint | None) -> Constraint:
        """The set the parameter lives in when its field declares ``domain``."""
        if self.constraint is not None:
            return self.constraint
        if self.prior is not None:
            return self.prior.support
        return domain if domain is not None else constraints.real

    def site_prior(self, name: str) -> Distribution | None:
        """The prior, expanded to the init's shape (``dist.LogNormal(0, 1)`` for a vector of
        lengthscales); a prior whose shape does not broadcast to it is an error."""
        if self.prior is None:
            return None
        shape = tuple(np.shape(self.init))
        have, event = self.prior.batch_shape, self.prior.event_shape
        batch = shape[: len(shape) - len(event)]
        if have + event == shape:
            return self.prior
        expands = len(have) <= len(batch) and all(
            a in (1, b) for a, b in zip(have[::-1], batch[::-1])
        )
        if shape[len(batch) :] != event or not expands:
            raise ValueError(
                f"Parameter {name!r}: the init value has shape {shape}, but the prior has shape "
                f"{have + event} (batch {have}, event {event}), which does not expand to it; "
                f"give an init of the prior's shape or a prior that broadcasts to the init's."
            )
        return self.prior.expand(batch).to_event(len(batch))

    def check(self, name: str, domain: Constraint | None = None) -> None:
        """Raise a ``ValueError`` naming ``name`` if the prior's shape does not fit the init's,
        the prior or constraint reaches outside ``domain``, or the init is not finite or not in
        the support."""
        self.site_prior(name)
        if domain is not None:
            prior_support = self.prior.support if self.prior is not None else None
            _check_inside(prior_support, domain, name, "prior")
            _check_inside(self.constraint, domain, name, "constraint")
        value = concrete(self.init)
        if value is None:
            return
        if not np.all(np.isfinite(value)):
            raise ValueError(f"Parameter {name!r}: init value {value} is not finite.")
        # The domain too: 0 is in the support of Uniform(0, 10) but not a valid lengthscale.
        for what, c in (("support", self._support_in(domain)), ("domain", domain)):
            if c is not None and not np.all(np.asarray(c(value))):
                example = "a positive value" if _is(c, constraints.positive) else f"a value in {c}"
                raise ValueError(
                    f"Parameter {name!r}: init value {value} is outside its {what} "
                    f"{type(c).__name__.strip('_')}; give an init inside it ({example})."
                )


def _is(c: Constraint, kind: Constraint) -> bool:
    return isinstance(c, type(kind))


def _bounds(c: Constraint) -> tuple[float, float] | None:
    """``(lower, upper)`` bounds of a constraint, ``None`` where unknown (an unknown constraint
    type, or traced bounds)."""
    while hasattr(c, "base_constraint"):  # independent(positive, 1) and friends
        c = c.base_constraint
    if _is(c, constraints.real):
        return -np.inf, np.inf
    if _is(c, constraints.positive_ordered_vector):
        return 0.0, np.inf
    lower, upper = getattr(c, "lower_bound", None), getattr(c, "upper_bound", None)
    if lower is None and upper is None:
        return None
    bounds = [
        default if b is None else concrete(b) for b, default in ((lower, -np.inf), (upper, np.inf))
    ]
    if any(b is None for b in bounds):
        return None
    return np.asarray(bounds[0], dtype=float), np.asarray(bounds[1], dtype=float)


def _check_inside(support: Constraint | None, domain: Constraint, name: str, what: str) -> None:
    """Raise unless the set ``support`` lies inside ``domain``, decided from their bounds: a
    continuous support may touch an open end of the domain (``Uniform(0, 10)`` for a positive
    parameter: the end has probability zero), a discrete one may not. Unknown bounds pass."""
    if support is None:
        return
    have, want = _bounds(support), _bounds(domain)
    if have is None or want is None:
        return
    discrete = bool(getattr(support, "is_discrete", False))

    def within(end, dend, outside) -> bool:
        if np.all(end == dend):
            return not discrete or bool(np.all(np.asarray(domain(dend))))
        return not np.any(outside(end, dend))

    if within(have[0], want[0], np.less) and within(have[1], want[1], np.greater):
        return
    hint = (
        " Use a prior on the positive reals, such as dist.LogNormal, dist.HalfNormal, "
        "dist.Gamma or dist.TruncatedNormal(..., low=0.0)."
        if _is(domain, constraints.positive)
        else ""
    )
    raise ValueError(
        f"Parameter {name!r}: its {what} has support {support}, which reaches outside the "
        f"parameter's domain {domain}.{hint}"
    )


def param_field(init: ArrayLike = 1.0, *, domain: Constraint = constraints.positive) -> Any:
    """Declare a :class:`PyroxParam` field of a :class:`Parameterized` class, and its domain::

        class Periodic(Kernel):
            period: PyroxParam = param_field(1.0)  # positive
            shift: PyroxParam = param_field(0.0, domain=constraints.real)

    The default is a learnable ``PyroxParam(init, constraint=domain)``; a ``PyroxParam``
    without prior or constraint takes the domain as its constraint. A prior or constraint
    reaching outside the domain, say ``dist.Normal`` for a lengthscale, is an error: the
    kernels and the noise use such a parameter only through its square, so a real-line prior
    silently makes the posterior its own mirror image (draws of either sign, mean near zero).
    ``dist.HalfNormal`` is the normal prior on the size.
    """
    return eqx.field(
        default_factory=lambda: PyroxParam(init, constraint=domain), metadata={"domain": domain}
    )


class Parameterized(PyroxModule):
    """A :class:`PyroxModule` whose :class:`PyroxParam` fields resolve themselves: read them
    with :meth:`get_param` inside a :func:`pyrox_method`. Construction fails for a parameter
    outside the domain its :func:`param_field` declares, or for two that share a site name."""

    def __check_init__(self) -> None:
        for name in self.param_names():
            getattr(self, name).check(name, self._domain(name))
        sites = self.site_names()
        clashes = sorted({s for s in sites if sites.count(s) > 1})
        if clashes:
            raise ValueError(
                f"{type(self).__name__}: site name(s) {clashes} are used by more than one "
                f"parameter; give the sub-modules distinct `pyrox_name=`."
            )

    def param_names(self) -> tuple[str, ...]:
        """Names of the fields that hold a :class:`PyroxParam`."""
        fields = dataclasses.fields(self)
        return tuple(f.name for f in fields if isinstance(getattr(self, f.name), PyroxParam))

    def _domain(self, name: str) -> Constraint | None:
        """The domain the field ``name`` declares through :func:`param_field`, or ``None``."""
        field = {f.name: f for f in dataclasses.fields(self)}.get(name)
        return None if field is None else field.metadata.get("domain")

    def site_names(self) -> list[str]:
        """Every site this module and its ``Parameterized`` fields (or tuples of them)
        register, in field order."""
        names: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, PyroxParam):
                names.append(self.site_name(f.name))
            for module in value if isinstance(value, tuple) else (value,):  # a composite's parts
                if isinstance(module, Parameterized):
                    names.extend(module.site_names())
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
        # Checked again here, when the site is registered (at trace time: nothing is added
        # to a compiled program), because eqx.tree_at can put any value in the field.
        param.check(name, self._domain(name))
        if not _inside_handler():
            return param.init
        if param.prior is not None:
            return self.pyrox_sample(name, param.site_prior(name))
        return self.pyrox_param(name, param.init, param._support_in(self._domain(name)))
