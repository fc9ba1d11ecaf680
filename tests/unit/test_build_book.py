"""scripts/build_book.py without running Jupyter Book: the notebooks, the theme, errors, the verdict."""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
build_book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_book)


def config(toc: list, template: str = "book-theme") -> dict:
    return {"version": 1, "project": {"toc": toc}, "site": {"template": template}}


def test_notebooks_are_every_notebook_of_the_toc_in_order() -> None:
    toc = [
        {"file": "index.md"},
        {"title": "A", "children": [{"file": "nb/1.ipynb"}, {"file": "nb/2.ipynb"}]},
        {"title": "B", "children": [{"file": "nb/3.ipynb"}, {"file": "page.md"}, {"title": "C", "children": [{"file": "nb/4.ipynb"}]}]},
        {"file": "api.md"},
        {"file": "nb/5.ipynb"},
    ]
    assert build_book.notebooks_of(config(toc)) == [f"nb/{i}.ipynb" for i in range(1, 6)]


@pytest.mark.parametrize(
    ("line", "last"),
    [
        ("\U0001f4da Built 1 page for project in 7.37 s.\n", True),
        ("\U0001f4da Built 9 pages for project in 1.1 min.\n", True),
        ("\U0001f4d6 Built notebooks/01_tree_at.ipynb in 530 ms.\n", False),
        ("\U0001f4bf Executing notebook (notebooks/01_tree_at.ipynb) [no execution cache found]\n", False),
    ],
)
def test_the_last_line_of_a_builds_work_is_recognised(line: str, last: bool) -> None:
    assert bool(build_book.BUILT.search(line)) is last


@pytest.mark.parametrize(
    ("template", "slot"),
    [("book-theme", "_build/templates/site/myst/book-theme"), ("myst/book-theme", "_build/templates/site/myst/book-theme")],
)
def test_theme_slot_is_where_jupyter_book_caches_a_named_theme(template, slot) -> None:
    assert build_book.theme_slot(config([], template)) == ROOT / slot


def test_theme_slot_is_none_for_a_path() -> None:
    assert build_book.theme_slot(config([], "/abs/theme")) is None


def fake_theme(folder: Path) -> Path:
    (folder / "build").mkdir(parents=True)
    (folder / "template.yml").write_text("jtex: v1\ntitle: fake\n", encoding="utf-8")
    return folder


def test_install_theme_links_a_folder(tmp_path) -> None:
    theme = fake_theme(tmp_path / "unpacked" / "book-theme")
    slot = tmp_path / "build" / "templates" / "site" / "myst" / "book-theme"
    build_book.install_theme(theme, slot)
    assert slot.is_symlink() and (slot / "template.yml").is_file()
    build_book.install_theme(tmp_path / "unpacked", slot)  # the parent of the theme folder also does
    assert slot.resolve() == theme.resolve()


def test_install_theme_unpacks_an_archive_once(tmp_path) -> None:
    theme = fake_theme(tmp_path / "src" / "book-theme")
    archive = tmp_path / "book-theme.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(theme, arcname="book-theme")
    slot = tmp_path / "templates" / "book-theme"
    build_book.install_theme(archive, slot)
    assert (slot / "template.yml").is_file() and not slot.is_symlink()
    (slot / "marker").write_text("kept", encoding="utf-8")
    build_book.install_theme(archive, slot)  # unchanged archive: not unpacked again
    assert (slot / "marker").is_file()


@pytest.mark.parametrize("kind", ["empty folder", "not an archive", "archive without theme"])
def test_install_theme_rejects_what_is_not_a_theme(tmp_path, kind) -> None:
    if kind == "empty folder":
        source = tmp_path / "empty"
        source.mkdir()
    elif kind == "not an archive":
        source = tmp_path / "theme.zip"
        source.write_bytes(b"PK")
    else:
        source = tmp_path / "other.tar.gz"
        with tarfile.open(source, "w:gz") as tar:
            data = b"hello"
            info = tarfile.TarInfo("readme.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(build_book.BuildError, match="BOOK_THEME"):
        build_book.install_theme(source, tmp_path / "slot")


@pytest.mark.parametrize("as_text", [False, True], ids=["traceback list", "traceback text"])
def test_a_cell_error_is_reported_with_its_traceback(tmp_path, as_text) -> None:
    traceback = ["\x1b[31mValueError\x1b[0m Traceback", "  in cell 3: f(x)", "ValueError: bad shape"]
    page = {
        "location": "/notebooks/x.ipynb",
        "mdast": {"type": "root", "children": [{"type": "output", "jupyter_data": {
            "output_type": "error", "ename": "ValueError", "evalue": "bad shape",
            "traceback": "\n".join(traceback) if as_text else traceback,
        }}]},
    }
    (tmp_path / "x.json").write_text(__import__("json").dumps(page), encoding="utf-8")
    problems = build_book.content_problems(tmp_path, ["notebooks/x.ipynb", "notebooks/y.ipynb"])
    assert problems[0] == "notebooks/y.ipynb: no site content written"
    assert "ValueError: bad shape" in problems[1] and "in cell 3: f(x)" in problems[1] and "\x1b" not in problems[1]


def test_only_the_theme_download_counts_as_offline() -> None:
    offline = "request to https://api.mystmd.org/templates/site/myst/book-theme failed, reason: getaddrinfo ENOTFOUND"
    assert build_book.only_theme_failed(1, "log\n" + offline + "\n")
    assert not build_book.only_theme_failed(0, offline)
    assert not build_book.only_theme_failed(1, "⛔ something else broke")


def test_closing_message_says_how_to_view_the_site(monkeypatch) -> None:
    monkeypatch.delenv("BASE_URL", raising=False)
    message = build_book.closing_message(True, "")
    assert "make serve" in message and "http.server" in message and "http://127.0.0.1:" in message
    assert "open _build/html/index.html" not in message
    monkeypatch.setenv("BASE_URL", "/pyrox-lite-book")
    assert "/pyrox-lite-book" in build_book.closing_message(True, "")
    assert "BOOK_THEME" in build_book.closing_message(False, build_book.NO_THEME)
