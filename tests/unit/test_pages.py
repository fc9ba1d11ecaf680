"""Every page of the book, as committed: text that renders
everywhere and fits the site's column.

* Math is standard LaTeX: none of the shorthand macros (``\\thetab``, ``\\y``, ...) that only a
  book configuration could define, so the pages read the same in JupyterLab, VS Code and the
  site's search results.
* Code fits the column: lines of at most 88 characters, and at most 70 in the comparison's
  side-by-side model cells; figures at most 7 in wide, drawn with the book's style and no
  font sizes of their own.
* Every cell has an id of its own (that notebooks carry no outputs is nbstripout's check, in
  test_conventions.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MACROS = re.compile(
    r"\\(thetab|y|f|X|lengthscale|amp|noise|jitter|kernel|Kxx|Kxxt|Cov|GP|Normal|LogNormal|Id)"
    r"(?![A-Za-z])"
)
FIGSIZE = re.compile(r"figsize=\(\s*([0-9.]+)\s*,")
MODEL_CELLS = re.compile(
    r"^(def model_\d|class RBFKernel|kernel_\w+ = |def bridge_model)", re.MULTILINE
)


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def code_lines(cell: dict) -> list[str]:
    """The lines a reader sees: cell options (``#| ...``) are not shown."""
    return [line for line in source(cell).splitlines() if not line.startswith("#|")]


def macros_in(text: str) -> list[str]:
    return sorted({m.group(0) for m in MACROS.finditer(text)})


def test_macro_pattern_finds_macros_and_spares_latex() -> None:
    assert macros_in(r"$p(\thetab \mid \y)$, $\Normal(0, 1)$, $\amp^2$") == [
        r"\Normal",
        r"\amp",
        r"\thetab",
        r"\y",
    ]
    assert macros_in(
        r"$\frac{1}{2}\, \mathbf{y}, \boldsymbol{\theta}, \sigma_n, \ell, \alpha, \Id_2$"
    ) == [r"\Id"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_math_is_plain_latex(path: Path) -> None:
    found = {c["id"]: macros_in(source(c)) for c in cells(path) if c["cell_type"] == "markdown"}
    assert {k: v for k, v in found.items() if v} == {}


def test_api_page_math_is_plain_latex() -> None:
    assert macros_in((ROOT / "api.md").read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_cell_ids_are_unique(path: Path) -> None:
    ids = [c.get("id") for c in cells(path)]
    assert None not in ids and len(set(ids)) == len(ids)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_fits_the_column(path: Path) -> None:
    # A cell whose input is folded away (hide-input) opens in a dropdown whose body is
    # narrower than the column: 690 px instead of 722 at a 1280 px window.
    def limit(cell: dict) -> int:
        tags = cell.get("metadata", {}).get("tags", [])
        return 84 if {"hide-input", "hide-cell"} & set(tags) else 88

    long = [
        (c["id"], line)
        for c in cells(path)
        if c["cell_type"] == "code"
        for line in code_lines(c)
        if len(line) > limit(c)
    ]
    assert long == []


def test_comparison_model_cells_fit_narrower() -> None:
    models = [
        c
        for c in cells(ROOT / "notebooks" / "04_comparison.ipynb")
        if c["cell_type"] == "code" and MODEL_CELLS.search(source(c))
    ]
    assert len(models) == 4, [c["id"] for c in models]
    long = [(c["id"], line) for c in models for line in code_lines(c) if len(line) > 70]
    assert long == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_use_the_book_style(path: Path) -> None:
    code = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "code")
    assert 'plt.style.use("pyrox_book.mplstyle")' in code
    widths = [float(w) for w in FIGSIZE.findall(code)]
    assert widths and max(widths) <= 7.0, widths
    assert "fontsize" not in code and "labelsize" not in code and "textsize" not in code


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_cell_options_are_yaml(path: Path) -> None:
    """``#| key: value`` options are YAML: an unquoted ": " in a caption makes the whole
    cell's metadata invalid, and its label and caption silently disappear from the page."""
    import yaml

    bad = {}
    for c in cells(path):
        options = [line[3:] for line in source(c).splitlines() if line.startswith("#|")]
        if c["cell_type"] == "code" and options:
            try:
                assert isinstance(yaml.safe_load("\n".join(options)), dict)
            except (yaml.YAMLError, AssertionError) as error:
                bad[c["id"]] = str(error).splitlines()[0]
    assert bad == {}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_inline_eval_uses_names_defined_above(path: Path) -> None:
    """The build evaluates an ``{eval}`` role when it reaches its markdown cell, so every name
    in it must be bound by a code cell above (nbconvert, which ignores the role, cannot tell)."""
    import ast
    import builtins

    defined, missing = set(dir(builtins)), {}
    for c in cells(path):
        if c["cell_type"] == "code":
            code = "\n".join(
                line for line in source(c).splitlines() if not line.startswith(("%", "!"))
            )
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    defined.add(node.id)
                elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    defined.add(node.name)
                elif isinstance(node, ast.alias):
                    defined.add((node.asname or node.name).split(".")[0])
        else:
            for expr in re.findall(r"\{eval\}`([^`]*)`", source(c)):
                names = {n.id for n in ast.walk(ast.parse(expr)) if isinstance(n, ast.Name)}
                if names - defined:
                    missing[expr] = sorted(names - defined)
    assert missing == {}


def evals_in_math(text: str) -> list[str]:
    """The ``{eval}`` roles that stand inside ``$...$`` or ``$$...$$``, where MyST renders
    them as the letters of their source instead of their value."""
    found, math, i = [], False, 0
    while i < len(text):
        role = re.match(r"\{eval\}(`+)(.+?)\1", text[i:], re.DOTALL)
        code = re.match(r"(`+).+?\1", text[i:], re.DOTALL)
        if role:
            found += [role.group(2)] if math else []
            i += role.end()
        elif code:
            i += code.end()
        else:
            if text[i] == "$":
                math = not math
                i += 2 if text.startswith("$$", i) else 1
                continue
            i += 1
    return found


def test_eval_in_math_pattern() -> None:
    assert evals_in_math("at $N = {eval}`n`$ and $$x = {eval}`y`$$") == ["n", "y"]
    assert evals_in_math("$d$ = {eval}`d` so $d + 1$ = {eval}`d + 1`; `$x` {eval}`z`") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_eval_inside_math(path: Path) -> None:
    found = {c["id"]: evals_in_math(source(c)) for c in cells(path) if c["cell_type"] == "markdown"}
    assert {k: v for k, v in found.items() if v} == {}, "write $N =$ {eval}`n`, not $N = {eval}`n`$"


ARTIFACT = re.compile(r"[\w-]+\.nc\b")


def test_artifact_pattern_finds_file_names() -> None:
    assert ARTIFACT.findall(
        'idata.to_netcdf("artifacts/pattern1.nc"); FILES = {"a": "b-2.nc"}'
    ) == ["pattern1.nc", "b-2.nc"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_reads_no_other_notebooks_files(path: Path) -> None:
    """A notebook runs alone and in any order: the only posterior files it names are its own.

    The book build runs the notebooks side by side; a page that read another's output would
    depend on which finished first. Each pattern page may read back what it wrote.
    """
    code = [source(c) for c in cells(path) if c["cell_type"] == "code"]
    named = {name for text in code for name in ARTIFACT.findall(text)}
    written = {
        name
        for text in code
        for line in text.splitlines()
        if "to_netcdf" in line
        for name in ARTIFACT.findall(line)
    }
    assert named <= written, f"{path.name} names files it does not write: {sorted(named - written)}"
