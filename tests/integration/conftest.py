"""One build of the book serves every integration test.

The session fixture ``book`` runs ``scripts/build_book.py`` (what ``make book`` runs) once,
before the first integration test: it executes every notebook of the table of contents
once, in the order ``myst.yml`` gives, writes the posterior artifacts the agreement tests
read (``notebooks/artifacts/``), every page's content (``_build/site/content/``) and,
when a theme is at hand (downloaded, or ``BOOK_THEME``), the HTML site the browser tests
load (``_build/html/``).

``pytest --reuse-book`` tests what an earlier build left in ``_build`` instead (quicker
while working on the tests themselves; ``make test`` always builds afresh).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "_build" / "logs"
OUTPUT = LOGS / "build-book.out"
VERDICT = LOGS / "build.json"


@dataclasses.dataclass(frozen=True)
class Book:
    """What the build did: exit status, everything it printed, its verdict file."""

    returncode: int
    output: str
    verdict: dict
    seconds: float | None  # None when an earlier build was reused

    def tail(self, chars: int = 6000) -> str:
        return self.output[-chars:]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reuse-book", action="store_true",
        help="test the book an earlier build left in _build instead of building it again",
    )


@pytest.fixture(scope="session", autouse=True)
def book(request: pytest.FixtureRequest) -> Book:
    if request.config.getoption("--reuse-book"):
        if not (OUTPUT.is_file() and VERDICT.is_file()):
            pytest.fail(f"--reuse-book: no earlier build in {LOGS} (run `make book` or the tests once)")
        verdict = json.loads(VERDICT.read_text(encoding="utf-8"))
        return Book(0 if "error" not in verdict else 1, OUTPUT.read_text(encoding="utf-8"), verdict, None)
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("CI", "true")
    env.pop("BASE_URL", None)  # the browser tests serve the site at the root
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_book.py")],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, errors="replace",
    )
    seconds = time.perf_counter() - start
    LOGS.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(run.stdout, encoding="utf-8")
    verdict = json.loads(VERDICT.read_text(encoding="utf-8")) if VERDICT.is_file() else {"error": "no verdict written"}
    built = Book(run.returncode, run.stdout, verdict, seconds)
    request.config.stash[BOOK_KEY] = built
    return built


BOOK_KEY = pytest.StashKey[Book]()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    built = config.stash.get(BOOK_KEY, None)
    if built is not None:
        html = "with the HTML site" if built.verdict.get("html") else "without HTML"
        terminalreporter.write_line(f"book build: {built.seconds:.0f} s, exit {built.returncode}, {html}")
