"""api.md against the package: every public name documented, every documented name real,
every documented signature the package's own."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import types
from pathlib import Path

import equinox as eqx
import jax
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

import pyrox_lite
from pyrox_lite import gp, kernels

jax.config.update("jax_enable_x64", True)

PAGE = Path(__file__).resolve().parents[2] / "api.md"
MODULES = (pyrox_lite, kernels, gp)
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
CALL = re.compile(r"^(pyrox_lite(?:\.\w+)+)\((.*)\)$")
CONSTANT = re.compile(r"^(pyrox_lite(?:\.\w+)+) = (.+)$")
# Names a documented default may use.
NAMESPACE = {
    **{n: getattr(pyrox_lite, n) for n in pyrox_lite.__all__},
    "constraints": constraints,
    "dist": dist,
}


def page_text() -> str:
    return PAGE.read_text(encoding="utf-8")


def signatures(block: str) -> list[str]:
    """The documented entries of one code block, each on one line.

    An entry starts on a line that begins with ``pyrox_lite.`` and, when its argument list
    is wrapped, runs on until its parentheses close; the lines are joined with spaces.
    """
    found, current = [], None
    for line in block.strip().splitlines():
        if current is None:
            if not line.startswith("pyrox_lite."):
                continue
            current = line.strip()
        else:
            current += " " + line.strip()
        if current.count("(") <= current.count(")"):
            found.append(re.sub(r"\(\s+", "(", re.sub(r",?\s+\)$", ")", current)))
            current = None
    if current is not None:
        raise AssertionError(f"api.md: the entry {current!r} never closes its parentheses")
    return found


def entries() -> list[tuple[str, str, str]]:
    """(qualified name, "call" or "constant", argument list or value) of every documented entry."""
    found = []
    for block in FENCE.findall(page_text()):
        for line in signatures(block):
            if m := CALL.match(line):
                found.append((m[1], "call", m[2]))
            elif m := CONSTANT.match(line):
                found.append((m[1], "constant", m[2]))
            else:
                raise AssertionError(f"api.md: cannot read the entry {line!r}")
    return found


def resolve(qualified: str) -> tuple[object, object]:
    """The documented object and the object it is an attribute of."""
    parts = qualified.split(".")
    parent, obj = None, pyrox_lite
    for i, part in enumerate(parts[1:], start=2):
        if not hasattr(obj, part):
            raise AssertionError(
                f"api.md documents {qualified}, but {'.'.join(parts[:i])} does not exist"
            )
        parent, obj = obj, getattr(obj, part)
    return obj, parent


def public_names() -> list[tuple[str, object]]:
    return [(f"{m.__name__}.{n}", getattr(m, n)) for m in MODULES for n in m.__all__]


def documented_parameters(args: str) -> list[tuple[str, inspect._ParameterKind, str | None]]:
    """(name, kind, default source or None) of a documented argument list."""
    spec = ast.parse(f"def _f({args}): pass").body[0].args
    out = []
    positional = spec.posonlyargs + spec.args
    defaults = [None] * (len(positional) - len(spec.defaults)) + list(spec.defaults)
    for a, d in zip(positional, defaults):
        kind = (
            inspect.Parameter.POSITIONAL_ONLY
            if a in spec.posonlyargs
            else inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        out.append((a.arg, kind, None if d is None else ast.unparse(d)))
    if spec.vararg:
        out.append((spec.vararg.arg, inspect.Parameter.VAR_POSITIONAL, None))
    for a, d in zip(spec.kwonlyargs, spec.kw_defaults):
        out.append((a.arg, inspect.Parameter.KEYWORD_ONLY, None if d is None else ast.unparse(d)))
    if spec.kwarg:
        out.append((spec.kwarg.arg, inspect.Parameter.VAR_KEYWORD, None))
    return out


def actual_parameters(obj: object, parent: object) -> list[inspect.Parameter]:
    params = list(inspect.signature(obj).parameters.values())
    if isinstance(parent, type) and inspect.isfunction(obj) and params and params[0].name == "self":
        params = params[1:]
    return params


def expected_default(obj: object, param: inspect.Parameter) -> object:
    """A parameter's default; for a dataclass field with a default factory, what it makes."""
    if isinstance(obj, type) and dataclasses.is_dataclass(obj):
        field = {f.name: f for f in dataclasses.fields(obj)}.get(param.name)
        if field is not None and field.default_factory is not dataclasses.MISSING:
            return field.default_factory()
    return param.default


def same_value(documented: object, expected: object) -> bool:
    if isinstance(expected, eqx.Module):
        return bool(eqx.tree_equal(documented, expected))
    return documented is expected or documented == expected


def test_page_has_entries() -> None:
    assert len(entries()) >= len(public_names()) - 2  # the two sub-modules have no signature


@pytest.mark.parametrize("qualified", [q for q, _ in public_names()])
def test_every_public_name_is_on_the_page(qualified: str) -> None:
    assert f"`{qualified}`" in page_text() or any(q == qualified for q, _, _ in entries()), (
        f"{qualified} is public but api.md does not mention it"
    )


@pytest.mark.parametrize(
    "qualified,obj", [(q, o) for q, o in public_names() if not isinstance(o, types.ModuleType)]
)
def test_every_public_object_has_an_entry(qualified: str, obj: object) -> None:
    documented = []
    for q, _, _ in entries():
        try:
            documented.append(resolve(q)[0])
        except AssertionError:  # reported by test_entry_matches_the_package
            pass
    assert any(d is obj for d in documented), f"api.md gives no signature or value for {qualified}"


@pytest.mark.parametrize("qualified,kind,spec", entries())
def test_entry_matches_the_package(qualified: str, kind: str, spec: str) -> None:
    obj, parent = resolve(qualified)
    if kind == "constant":
        assert same_value(eval(spec, NAMESPACE), obj), (
            f"api.md gives {qualified} = {spec}; it is {obj!r}"
        )
        return
    assert callable(obj), f"api.md documents {qualified}(...), but it is not callable"
    actual = actual_parameters(obj, parent)
    documented = documented_parameters(spec)
    assert [(p.name, p.kind) for p in actual] == [(n, k) for n, k, _ in documented], (
        f"{qualified}: api.md says ({spec}); the package says {inspect.signature(obj)}"
    )
    for p, (name, _, default) in zip(actual, documented):
        has_default = p.default is not inspect.Parameter.empty
        assert has_default == (default is not None), f"{qualified}: default of {name!r} differs"
        if has_default:
            expected = expected_default(obj, p)
            assert same_value(eval(default, NAMESPACE), expected), (
                f"{qualified}: api.md gives {name}={default}; the package's default is {expected!r}"
            )


def test_every_entry_says_what_it_is_for() -> None:
    """A paragraph follows each signature block."""
    text = page_text()
    for m in FENCE.finditer(text):
        if "pyrox_lite." not in m[1] or "jax.config" in m[1]:
            continue
        rest = text[m.end() :].lstrip("\n")
        paragraph = rest.split("\n\n", 1)[0].strip()
        assert paragraph and not paragraph.startswith(("```", "#", "(")), (
            f"no description after the block {m[1].strip().splitlines()[0]!r}"
        )
