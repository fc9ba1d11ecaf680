"""One build of the book serves every integration test.

``scripts/build_book.py`` (what ``make book`` runs) starts once the tests are collected and
runs in the background while the unit tests run. It executes every notebook of the table of
contents once (side by side, one per core), which writes the posterior artifacts
(``notebooks/artifacts/``); then it renders every page's content (``_build/site/content/``)
and the HTML site the browser tests load (``_build/html/``). The integration tests wait for
the first part (fixture ``executed``); those that read the site ask for ``book``, which waits
for the second, and run last, while the browser loads the pages in the background.

``pytest --reuse-book`` tests what an earlier build left in ``_build`` instead (quicker
while working on the tests themselves; ``make test`` always builds afresh).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import shutil
import signal
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
        "--reuse-book",
        action="store_true",
        help="test the book an earlier build left in _build instead of building it again",
    )


BUILD_KEY = pytest.StashKey[tuple[subprocess.Popen, float]]()
# The unit tests run beside the build's two notebook kernels, which run at a lower priority.
# Where Linux shares the CPU between sessions first (autogroup), as on the machines measured,
# this ranks the build only against itself, since it is a session of its own.
NICE = ["nice", "-n", "10"] if shutil.which("nice") else []


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the build as soon as the tests are collected, when any integration test will run.

    It runs in the background while the unit tests run (it executes notebooks in kernels of
    their own), and the ``book`` fixture waits for it.
    """
    config = session.config
    if config.getoption("--reuse-book") or config.getoption("collectonly"):
        return
    if not any(item.path.is_relative_to(Path(__file__).parent) for item in session.items):
        return
    env = dict(os.environ)  # with build_book.KERNEL_ENV, which the root conftest.py sets
    env.pop("BASE_URL", None)  # the browser tests serve the site at the root
    LOGS.mkdir(parents=True, exist_ok=True)
    VERDICT.unlink(missing_ok=True)
    EXECUTED.unlink(missing_ok=True)
    with OUTPUT.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            [*NICE, sys.executable, str(ROOT / "scripts" / "build_book.py")],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stopped as a group: the build and the jupyter-book it runs
        )
    config.stash[BUILD_KEY] = (proc, time.perf_counter())
    # When the build ends, the browser starts loading the pages while the tests run.
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="book")
    config.stash[FINISHED_KEY] = pool.submit(finish_build, config)
    pool.shutdown(wait=False)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop a build still running when the session ends early (Ctrl-C, -x), then the browser."""
    proc, _ = config.stash.get(BUILD_KEY, (None, 0.0))
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its notebook kernels see their parent go, and exit
        proc.wait()
    finished = config.stash.get(FINISHED_KEY, None)
    if finished is not None:
        concurrent.futures.wait([finished])  # the browser run starts there
    run = config.stash.get(BROWSER_KEY, None)
    if run is not None and not isinstance(run, str):
        run.close()


EXECUTED = LOGS / "executed.json"  # the build writes it once every notebook has run
FINISHED_KEY = pytest.StashKey[concurrent.futures.Future]()


@pytest.fixture(scope="session", autouse=True)
def executed(request: pytest.FixtureRequest) -> None:
    """Every integration test waits until the notebooks have run: their artifacts and executed
    copies are then written. The site still renders; the tests that read it ask for ``book``."""
    config = request.config
    if config.getoption("--reuse-book"):
        return
    proc, _ = config.stash[BUILD_KEY]
    while proc.poll() is None and not EXECUTED.is_file():
        time.sleep(0.2)


def finish_build(config: pytest.Config) -> Book:
    proc, start = config.stash[BUILD_KEY]
    returncode = proc.wait()
    seconds = time.perf_counter() - start
    output = OUTPUT.read_text(encoding="utf-8", errors="replace")
    verdict = (
        json.loads(VERDICT.read_text(encoding="utf-8"))
        if VERDICT.is_file()
        else {"error": "no verdict written"}
    )
    built = Book(returncode, output, verdict, seconds)
    config.stash[BOOK_KEY] = built
    start_browser(config, built)
    return built


@pytest.fixture(scope="session")
def book(request: pytest.FixtureRequest) -> Book:
    """The finished build: the site rendered too."""
    if not request.config.getoption("--reuse-book"):
        return request.config.stash[FINISHED_KEY].result()
    if not (OUTPUT.is_file() and VERDICT.is_file()):
        pytest.fail(f"--reuse-book: no earlier build in {LOGS} (run the tests once)")
    verdict = json.loads(VERDICT.read_text(encoding="utf-8"))
    built = Book(
        0 if "error" not in verdict else 1, OUTPUT.read_text(encoding="utf-8"), verdict, None
    )
    start_browser(request.config, built)
    return built


ARTIFACTS = ROOT / "notebooks" / "artifacts"
PATTERNS = ("pattern1", "pattern2", "pattern3")


@pytest.fixture(scope="session")
def artifacts() -> dict:
    """The posterior files of the three pattern notebooks (ArviZ InferenceData), read once."""
    import arviz as az

    missing = [p for p in PATTERNS if not (ARTIFACTS / f"{p}.nc").is_file()]
    if missing:
        pytest.fail(
            f"Posterior artifacts {missing} not found in {ARTIFACTS}: run the notebooks first "
            f"(`pytest` runs them before this file; or run notebooks/01-03 by hand)."
        )
    with az.rc_context({"data.load": "eager"}):
        return {p: az.from_netcdf(ARTIFACTS / f"{p}.nc") for p in PATTERNS}


@pytest.fixture(scope="session")
def browser_run(request: pytest.FixtureRequest, book: Book):
    """The background run of the browser over the site (a ``browser.BrowserRun``), or why none started."""
    return request.config.stash.get(BROWSER_KEY, "the browser run was not started")


BROWSER_KEY = pytest.StashKey["object"]()  # a browser.BrowserRun, or why none could start


def start_browser(config: pytest.Config, built: Book) -> None:
    """Start loading the site's pages in the background, if any browser test is to run."""
    if not config.stash.get(BROWSER_TESTS_KEY, False):
        return
    try:
        import browser
    except ImportError as err:
        config.stash[BROWSER_KEY] = (
            f"the browser tests cannot run: {err} (pip install -e '.[test]')"
        )
        return
    config.stash[BROWSER_KEY] = browser.BrowserRun(built)


BROWSER_TESTS_KEY = pytest.StashKey[bool]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests of the rendered site run last, the browser's at the very end: the site renders,
    then the pages load in the background, while the tests of the executed notebooks run."""
    config.stash[BROWSER_TESTS_KEY] = any(i.path.name == "test_browser.py" for i in items)
    last = {"test_book.py": 1, "test_browser.py": 2}
    items.sort(key=lambda i: last.get(i.path.name, 0))  # stable: the order within each is kept


BOOK_KEY = pytest.StashKey[Book]()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    built = config.stash.get(BOOK_KEY, None)
    if built is not None:
        html = "with the HTML site" if built.verdict.get("html") else "without HTML"
        terminalreporter.write_line(
            f"book build: {built.seconds:.0f} s, exit {built.returncode}, {html}"
        )
