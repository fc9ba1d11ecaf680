"""scripts/build_book.py without Jupyter Book: the table of contents, the execution of a
notebook (``{eval}`` expressions, a failing cell), the staging copy, the theme, the cores the
kernels run on."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import build_book
import nbformat
import pytest


def test_toc_files_are_every_file_of_the_toc_in_order() -> None:
    toc = [
        {"file": "index.md"},
        {"title": "A", "children": [{"file": "nb/1.ipynb"}, {"file": "nb/2.ipynb"}]},
        {
            "title": "B",
            "children": [{"file": "nb/3.ipynb"}, {"title": "C", "children": [{"file": "p.md"}]}],
        },
        {"file": "api.md"},
    ]
    assert build_book.toc_files({"project": {"toc": toc}}) == [
        "index.md",
        "nb/1.ipynb",
        "nb/2.ipynb",
        "nb/3.ipynb",
        "p.md",
        "api.md",
    ]


def notebook(folder: Path, *cells) -> Path:
    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        }
    )
    nb.cells = [
        nbformat.v4.new_markdown_cell(c[3:])
        if c.startswith("md:")
        else nbformat.v4.new_code_cell(c)
        for c in cells
    ]
    path = folder / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_notebook_runs_in_its_folder_with_each_eval_evaluated_where_it_stands(tmp_path) -> None:
    src = notebook(
        tmp_path,
        "import os\nx = 1",
        "md:x is {eval}`x`, formatted {eval}`f'{x:.2f}'`, cwd ``{eval}`os.getcwd()` ``",
        "x = 2",
        "md:now {eval}`x`",
        "open('written.txt', 'w').write('ok')",
    )
    assert build_book.execute(src, tmp_path / "out" / "nb.ipynb") is None
    cells = nbformat.read(tmp_path / "out" / "nb.ipynb", as_version=4).cells
    found = [
        {
            e["expression"]: e["result"]["data"]["text/plain"]
            for e in c.metadata.get("user_expressions", [])
        }
        for c in cells
        if c.cell_type == "markdown"
    ]
    assert found == [
        {"x": "1", "f'{x:.2f}'": "'1.00'", "os.getcwd()": repr(str(tmp_path))},
        {"x": "2"},
    ]
    assert (tmp_path / "written.txt").read_text() == "ok"
    assert all(c.get("outputs") is not None for c in cells if c.cell_type == "code")


def test_a_cell_that_raises_stops_its_notebook_and_is_reported_with_its_traceback(tmp_path) -> None:
    src = notebook(
        tmp_path, "def f(x):\n    raise ValueError(f'bad shape {x}')", "f(3)", "print('after')"
    )
    problem = build_book.execute(src, tmp_path / "out" / "nb.ipynb")
    assert (
        problem is not None
        and "ValueError: bad shape 3" in problem
        and "f(3)" in problem
        and "\x1b" not in problem
    )
    cells = nbformat.read(tmp_path / "out" / "nb.ipynb", as_version=4).cells
    assert [o["output_type"] for o in cells[1].outputs] == ["error"]  # the page shows the traceback
    assert cells[2].outputs == []


def test_an_eval_that_raises_is_reported(tmp_path) -> None:
    problem = build_book.execute(
        notebook(tmp_path, "x = 1", "md:{eval}`undefined_name`"), tmp_path / "out.ipynb"
    )
    assert problem is not None and "NameError" in problem and "undefined_name" in problem


def test_stage_links_every_file_but_the_executed_ones(tmp_path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    for name in (
        "myst.yml",
        "index.md",
        "docs/logo.svg",
        "notebooks/a.ipynb",
        "notebooks/b.ipynb",
        "notebooks/style",
        ".git/HEAD",
    ):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(name)
    dst.mkdir()
    build_book.stage(src, dst, {src / "myst.yml", src / "notebooks" / "a.ipynb"})
    assert sorted(p.name for p in dst.iterdir()) == ["docs", "index.md", "notebooks"]
    assert (dst / "docs").is_symlink() and (dst / "index.md").resolve() == src / "index.md"
    assert not (dst / "notebooks").is_symlink()
    assert sorted(p.name for p in (dst / "notebooks").iterdir()) == ["b.ipynb", "style"]
    assert (dst / "notebooks" / "b.ipynb").is_symlink()


def fake_theme(folder: Path) -> Path:
    (folder / "build").mkdir(parents=True)
    (folder / "template.yml").write_text("jtex: v1\ntitle: fake\n", encoding="utf-8")
    return folder


def test_theme_folder_is_the_folder_or_its_one_theme(tmp_path) -> None:
    theme = fake_theme(tmp_path / "unpacked" / "book-theme")
    assert build_book.theme_folder(str(theme)) == theme
    assert build_book.theme_folder(str(tmp_path / "unpacked")) == theme


@pytest.mark.parametrize("kind", ["empty folder", "a file"])
def test_theme_folder_rejects_what_is_not_a_theme(tmp_path, kind) -> None:
    source = tmp_path / "theme"
    if kind == "empty folder":
        source.mkdir()
    else:
        source.write_bytes(b"PK")
    with pytest.raises(SystemExit, match="BOOK_THEME"):
        build_book.theme_folder(str(source))


def test_closing_message_says_how_to_view_the_site(monkeypatch) -> None:
    monkeypatch.delenv("BASE_URL", raising=False)
    message = build_book.closing_message()
    assert (
        "make serve" in message
        and "http.server" in message
        and "open _build/html/index.html" not in message
    )
    monkeypatch.setenv("BASE_URL", "/pyrox-lite-book")
    assert "/pyrox-lite-book" in build_book.closing_message()


def test_a_failed_build_exits_non_zero_and_says_why_in_its_verdict(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(build_book, "BUILD", tmp_path)
    monkeypatch.setattr(build_book, "VERDICT_FILE", tmp_path / "logs" / "build.json")

    def build(theme, jobs) -> None:
        raise SystemExit("07_x.ipynb: ValueError")

    monkeypatch.setattr(build_book, "build", build)
    assert build_book.main() == 1
    assert json.loads((tmp_path / "logs" / "build.json").read_text()) == {
        "html": False,
        "error": "07_x.ipynb: ValueError",
    }
    assert "error: 07_x.ipynb: ValueError" in capsys.readouterr().err


@pytest.mark.skipif(not build_book.CORES, reason="no CPU affinity on this platform")
def test_each_worker_keeps_its_kernels_on_a_core_of_its_own(tmp_path, monkeypatch) -> None:
    toc = [{"file": f"{n}.ipynb"} for n in "abcdef"]
    (tmp_path / "myst.yml").write_text(json.dumps({"project": {"toc": toc}}))
    for name, path in [("ROOT", tmp_path), ("BUILD", tmp_path / "_build")]:
        monkeypatch.setattr(build_book, name, path)
    monkeypatch.setattr(build_book, "STAGE", tmp_path / "_build" / "book")
    monkeypatch.setattr(build_book, "EXECUTED_FILE", tmp_path / "executed.json")
    workers = defaultdict(list)  # for each worker thread, the cores its kernels may run on

    def execute(notebook: Path, out: Path) -> None:
        kernel = "import os; print(*os.sched_getaffinity(0))"
        cores = subprocess.check_output([sys.executable, "-c", kernel], text=True).split()
        workers[threading.get_ident()].append(tuple(cores))

    monkeypatch.setattr(build_book, "execute", execute)
    rendered = SimpleNamespace(returncode=0)  # the render is not run
    monkeypatch.setattr(build_book, "subprocess", SimpleNamespace(run=lambda *a, **k: rendered))
    build_book.build(None, jobs=2)
    assert sum(map(len, workers.values())) == 6
    for kernels in workers.values():  # one core, the same for each kernel of a worker
        assert len(kernels[0]) == 1 and set(kernels) == {kernels[0]}
    if len(build_book.CORES) >= 2:  # and a core of its own
        assert len({kernels[0] for kernels in workers.values()}) == len(workers)
