"""The book builds, and what it builds is whole.

The session fixture ``book`` (tests/integration/conftest.py) runs ``scripts/build_book.py``,
the build ``make book`` runs, once for all integration tests: every notebook executes
once, and every page's MyST AST is written to ``_build/site/content/*.json``, and the HTML
site to ``_build/html``. The tests read the JSON, not the script's verdict alone:
every page of the table of contents is there, every citation and cross-reference resolves,
every notebook shows its figures as images and no cell raised (the failing cell's
traceback is shown), and the build log holds no warning (``--strict`` fails the build on an
error).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from build_book import toc_files
from matplotlib import image as mpimg

ROOT = Path(__file__).resolve().parents[2]
CONTENT = ROOT / "_build" / "site" / "content"
PUBLIC = ROOT / "_build" / "site" / "public"
IMAGE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")
LOG_MARKS = ("\u26a0", "\u26d4")  # Jupyter Book's warning and error prefixes
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


TOC = toc_files(yaml.safe_load((ROOT / "myst.yml").read_text(encoding="utf-8")))
NOTEBOOKS = [f for f in TOC if f.endswith(".ipynb")]


def bib_keys() -> set[str]:
    return set(
        re.findall(
            r"^@\w+\{([^,\s]+),",
            (ROOT / "references.bib").read_text(encoding="utf-8"),
            re.MULTILINE,
        )
    )


def nodes(tree: object, *types: str) -> list[dict]:
    """Every mdast node of the given types, depth first."""
    found = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") in types:
                found.append(node)
            stack.extend(reversed([v for v in node.values() if isinstance(v, (dict, list))]))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return found


def outputs(tree: object) -> list[dict]:
    """The Jupyter outputs under an mdast node."""
    return [
        n["jupyter_data"] for n in nodes(tree, "output") if isinstance(n.get("jupyter_data"), dict)
    ]


@pytest.fixture(scope="session")
def pages(book) -> dict[str, dict]:
    """Built pages by source file; fails with the build's own account if nothing was built."""
    found = {}
    for path in sorted(CONTENT.glob("*.json")) if CONTENT.is_dir() else []:
        page = json.loads(path.read_text(encoding="utf-8"))
        if "location" in page and "mdast" in page:
            found[page["location"].lstrip("/")] = page
    if not found:
        pytest.fail(f"the build wrote no site content.\n{book.tail()}")
    return found


def describe_error(output: dict) -> str:
    """An error output as the notebook showed it: the traceback, without terminal colours."""
    trace = output.get("traceback") or []
    trace = ANSI.sub("", trace if isinstance(trace, str) else "\n".join(trace)).strip()
    return trace or f"{output.get('ename')}: {output.get('evalue')}"


def page_ids(files: list[str]) -> list:
    return [pytest.param(f, id=f) for f in files]


def test_build_script_succeeds(book) -> None:
    assert book.returncode == 0 and "error" not in book.verdict, book.tail()
    assert book.verdict.get("html") and (ROOT / "_build" / "html" / "index.html").is_file()
    assert "make serve" in book.output, "the closing message does not say how to view the site"


def test_notebooks_ran_before_the_site_rendered(book) -> None:
    """The build says when every notebook has run (the tests of their artifacts start then)."""
    executed = ROOT / "_build" / "logs" / "executed.json"
    assert json.loads(executed.read_text(encoding="utf-8")) == {"problems": []}
    assert executed.stat().st_mtime <= (ROOT / "_build" / "html" / "index.html").stat().st_mtime


def test_build_log_has_no_warnings_or_errors(book) -> None:
    flagged = sorted(
        {
            line.strip()
            for line in book.output.splitlines()
            if any(mark in line for mark in LOG_MARKS)
        }
    )
    assert flagged == []


@pytest.mark.parametrize("file", page_ids(TOC))
def test_every_toc_page_is_built(pages, file) -> None:
    assert file in pages, f"no site content for {file}; built: {sorted(pages)}"
    assert pages[file]["kind"] == ("Notebook" if file.endswith(".ipynb") else "Article")


def test_no_page_outside_the_toc(pages) -> None:
    assert sorted(set(pages) - set(TOC)) == []


@pytest.mark.parametrize("file", page_ids(TOC))
def test_citations_resolve(pages, file) -> None:
    page = pages[file]
    keys = bib_keys()
    rendered = page["references"]["cite"]["data"]
    for cite in nodes(page["mdast"], "cite"):
        label = cite.get("label")
        assert "error" not in cite, f"{file}: citation {label!r}: {cite['error']}"
        assert label in keys, f"{file}: {label!r} is not in references.bib"
        assert rendered.get(label, {}).get("html"), f"{file}: {label!r} has no bibliography entry"


def test_every_reference_is_cited(pages) -> None:
    cited = {c.get("label") for page in pages.values() for c in nodes(page["mdast"], "cite")}
    assert sorted(bib_keys() - cited) == []


@pytest.mark.parametrize("file", page_ids(TOC))
def test_cross_references_resolve(pages, file) -> None:
    page = pages[file]
    for ref in nodes(page["mdast"], "crossReference"):
        assert ref.get("resolved") is True and "error" not in ref, (
            f"{file}: unresolved reference {ref.get('identifier')!r}"
        )
    for link in nodes(page["mdast"], "link"):
        url, source = link.get("url", ""), link.get("urlSource", "")
        assert not url.startswith("#"), f"{file}: no target for {source!r}"
        if link.get("internal"):
            target = CONTENT / link["dataUrl"].lstrip("/")
            assert target.is_file(), f"{file}: link {source!r} points to a page that was not built"
        elif link.get("static"):
            assert (PUBLIC / url.lstrip("/")).is_file(), (
                f"{file}: the file behind {source!r} was not copied"
            )
        else:
            assert re.match(r"^(https?|mailto):", url), (
                f"{file}: link {source!r} resolves to nothing"
            )


@pytest.mark.parametrize("file", page_ids(TOC))
def test_math_renders(pages, file) -> None:
    for math in nodes(pages[file]["mdast"], "math", "inlineMath"):
        assert "error" not in math and "katex-error" not in math.get("html", ""), (
            f"{file}: cannot render ${math.get('value')}$"
        )


def test_landing_page_numbers_and_references_its_equations(pages) -> None:
    tree = pages["index.md"]["mdast"]
    equations = {m["identifier"]: m for m in nodes(tree, "math") if m.get("identifier")}
    referenced = {r["identifier"] for r in nodes(tree, "crossReference")}
    for label in ("eq-marginal", "eq-joint"):
        assert label in equations and equations[label].get("enumerator"), (
            f"index.md: {label} is not a numbered equation"
        )
        assert label in referenced, f"index.md: the text never refers to {label}"


@pytest.mark.parametrize("file", page_ids(NOTEBOOKS))
def test_notebook_raised_nothing(pages, file) -> None:
    errors = [
        describe_error(o) for o in outputs(pages[file]["mdast"]) if o.get("output_type") == "error"
    ]
    assert errors == [], f"{file}: a cell raised\n" + "\n".join(errors)


@pytest.mark.parametrize("file", page_ids(NOTEBOOKS))
def test_notebook_prints_no_warnings(pages, file) -> None:
    """Nothing on stderr: a warning printed by a cell would sit in the rendered page."""
    noisy = []
    for block in nodes(pages[file]["mdast"], "block"):
        streams = [
            o
            for o in outputs(block)
            if o.get("output_type") == "stream" and o.get("name") == "stderr"
        ]
        if streams:
            code = next((c.get("value", "") for c in nodes(block, "code")), "")
            noisy.append(
                f"cell starting {code.strip().splitlines()[0] if code.strip() else '?'!r}: "
                f"{streams[0].get('text', '').strip()[:300]}"
            )
    assert noisy == [], f"{file}: " + "\n".join(noisy)


@pytest.mark.parametrize("file", page_ids(NOTEBOOKS))
def test_notebook_is_executed(pages, file) -> None:
    code = [b for b in nodes(pages[file]["mdast"], "block") if b.get("kind") == "notebook-code"]
    assert code, f"{file}: no code cells"
    assert any(outputs(b) for b in code), f"{file}: no cell has an output; was it executed?"


@pytest.mark.parametrize("file", page_ids(NOTEBOOKS))
def test_notebook_figures_are_images(pages, file) -> None:
    """Every figure a notebook draws reaches the page as an image that is not blank."""
    images = []
    for out in outputs(pages[file]["mdast"]):
        data = out.get("data", {})
        text = data.get("text/plain", {}).get("content", "")
        kinds = [t for t in IMAGE_TYPES if t in data]
        if text.startswith(("<Figure", "<matplotlib")):
            assert kinds, f"{file}: a figure came out as the text {text!r}, not as an image"
        images += [data[t]["path"] for t in kinds]
    assert images, f"{file}: no figure"
    for path in images:
        local = PUBLIC / path.lstrip("/")
        assert local.is_file(), f"{file}: image {path} was not written"
        if local.suffix == ".png":
            pixels = mpimg.imread(local)
            assert pixels.ndim == 3 and float(np.ptp(pixels[..., :3])) > 0, (
                f"{file}: {path} is blank"
            )
