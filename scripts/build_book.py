"""Build the book: execute each notebook of the table of contents once, then render the site.

``make book``. Environment: ``BOOK_THEME=DIR`` a local copy of the site theme (else downloaded),
``BASE_URL=/name`` a site served under /name, ``BOOK_JOBS=N`` notebooks at a time (one per core).

nbclient runs each notebook in a fresh kernel, evaluating the ``{eval}`` roles of its markdown as
Jupyter Book does, into a staging copy of the project, ``_build/book/``, which ``jupyter-book build
--html --strict`` renders: HTML to ``_build/html``, content to ``_build/site``, a verdict to
``_build/logs``. Each worker keeps its kernels on one core, where XLA runs single-threaded and
spends less CPU on a busy machine (the latent chapter alone: 124 CPU-s instead of 150).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
STAGE = BUILD / "book"
VERDICT_FILE = BUILD / "logs" / "build.json"
EXECUTED_FILE = BUILD / "logs" / "executed.json"  # written once every notebook has run
EVAL = re.compile(r"\{eval\}(`+)(.+?)\1")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def toc_files(config: dict) -> list[str]:
    """Every file of the table of contents, in order."""

    def walk(entries: list) -> list[str]:
        return [f for e in entries for f in [e.get("file"), *walk(e.get("children", []))] if f]

    return walk(config["project"]["toc"])


KERNEL_ENV = {  # what the kernels inherit; a size limit turns on the JAX cache's file lock
    "JAX_COMPILATION_CACHE_DIR": str(BUILD / "jax-cache"),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.05",
    "JAX_COMPILATION_CACHE_MAX_SIZE": str(4 * 2**30),
    "OPENBLAS_NUM_THREADS": "1",
    "CI": "true",
}
CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


class Executor(NotebookClient):
    """nbclient's executor, which also evaluates each markdown cell's ``{eval}`` expressions."""

    async def async_execute_cell(self, cell, index, execution_count=None, store_history=True):
        if cell.cell_type != "markdown":
            return await super().async_execute_cell(cell, index, execution_count, store_history)
        found = []
        for expression in dict.fromkeys(m.group(2) for m in EVAL.finditer(cell.source)):
            msg_id = self.kc.execute("", store_history=False, user_expressions={"expr": expression})
            reply = await self.async_wait_for_reply(msg_id, cell)
            result = reply["content"]["user_expressions"]["expr"]
            if result["status"] != "ok":
                trace = "\n".join(result["traceback"])
                raise CellExecutionError(
                    f"{{eval}}`{expression}` raised:\n{trace}", result["ename"], result["evalue"]
                )
            found.append({"expression": expression, "result": result})
        cell.metadata.update({"user_expressions": found} if found else {})
        return cell


def execute(notebook: Path, out: Path) -> str | None:
    """Execute ``notebook`` into ``out``; what went wrong, if anything (the run stops there)."""
    nb, problem = nbformat.read(notebook, as_version=4), None
    try:
        where = {"metadata": {"path": str(notebook.parent)}}
        Executor(nb, timeout=900, record_timing=False, resources=where).execute()
    except Exception as err:  # a cell raised, timed out, or its kernel died: reported, not hidden
        problem = f"{notebook.name}: {type(err).__name__}: {ANSI.sub('', str(err)).strip()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)  # with the failing cell's traceback, for its page to show
    return problem


def stage(src: Path, dst: Path, keep: set[Path]) -> None:
    """Link every file of ``src`` into ``dst``, but those in ``keep``, hidden ones and ``_build``."""
    for entry in sorted(src.iterdir()):
        if entry in keep or entry.name.startswith(".") or entry == BUILD:
            continue
        if any(entry in k.parents for k in keep):
            (dst / entry.name).mkdir(exist_ok=True)
            stage(entry, dst / entry.name, keep)
        else:
            (dst / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())


def theme_folder(source: str) -> Path:
    """The folder holding ``template.yml`` in ``BOOK_THEME`` (the theme, or a folder around it)."""
    path = Path(source).expanduser().resolve()
    for template in (path / "template.yml", *sorted(path.glob("*/template.yml"))):
        if template.is_file():
            return template.parent
    raise SystemExit(f"BOOK_THEME={source}: no site theme there (a folder with template.yml)")


def build(theme: str | None, jobs: int) -> None:
    config = yaml.safe_load((ROOT / "myst.yml").read_text(encoding="utf-8"))
    files = toc_files(config)  # a file that does not exist fails its execution or the render
    if theme:
        config.setdefault("site", {})["template"] = str(theme_folder(theme))
    for old in (STAGE, BUILD / "html", BUILD / "site"):
        shutil.rmtree(old, ignore_errors=True)
    # The later chapters take longest: started first, they keep every core busy to the end.
    notebooks = [f for f in reversed(files) if f.endswith(".ipynb")]
    STAGE.mkdir(parents=True)
    stage(ROOT, STAGE, {ROOT / f for f in notebooks} | {ROOT / "myst.yml"})
    (STAGE / "myst.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    (BUILD / "jupyter-book").mkdir(exist_ok=True)  # kept between builds: a downloaded theme
    (STAGE / "_build").symlink_to(BUILD / "jupyter-book", target_is_directory=True)
    os.environ.update({k: v for k, v in KERNEL_ENV.items() if k not in os.environ})
    print(f"Executing {len(notebooks)} notebooks, {jobs} at a time:", flush=True)
    start, problems, cores = time.perf_counter(), [], itertools.cycle(CORES)
    pin = {"initializer": lambda: os.sched_setaffinity(0, {next(cores)})} if CORES else {}
    with concurrent.futures.ThreadPoolExecutor(jobs, **pin) as pool:  # a core per worker
        runs = {pool.submit(execute, ROOT / f, STAGE / f): f for f in notebooks}
        for run in concurrent.futures.as_completed(runs):
            problems += [run.result()] if run.result() else []
            state = "failed" if run.result() else "done"
            print(f"  {runs[run]}: {state} at {time.perf_counter() - start:.0f} s", flush=True)
    EXECUTED_FILE.write_text(json.dumps({"problems": problems}))  # the site renders next
    render = [sys.executable, "-m", "jupyter_book", "build", "--html", "--strict"]
    rc = subprocess.run(render, cwd=STAGE).returncode
    for name in ("site", "html"):
        if (STAGE / "_build" / name).is_dir():
            (STAGE / "_build" / name).rename(BUILD / name)
    if rc != 0:
        hint = "" if theme else " (offline? a local copy of the theme: BOOK_THEME=/path/to/it)"
        problems.append(f"jupyter-book build --html --strict exited {rc}{hint}")
    if problems:
        raise SystemExit("the book did not build:\n" + "\n\n".join(problems))


def closing_message() -> str:
    if base := os.environ.get("BASE_URL", "").strip("/"):
        return f"book built in _build/html for a site served under /{base}: publish it there."
    return "book built in _build/html; view it over HTTP: make serve (python -m http.server)"


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C stops at once, kernels too
    start, error = time.perf_counter(), None
    VERDICT_FILE.parent.mkdir(parents=True, exist_ok=True)
    EXECUTED_FILE.unlink(missing_ok=True)
    VERDICT_FILE.write_text(json.dumps({"html": False, "error": "the build did not finish"}))
    try:
        if shutil.which("node") is None:
            raise SystemExit("jupyter-book needs Node.js 18 or newer on PATH (https://nodejs.org)")
        jobs = int(os.environ.get("BOOK_JOBS") or len(CORES) or os.cpu_count() or 1)
        build(os.environ.get("BOOK_THEME") or None, jobs)
    except SystemExit as err:
        error = str(err)
    html = (BUILD / "html" / "index.html").is_file()
    VERDICT_FILE.write_text(json.dumps({"html": html} | ({"error": error} if error else {})))
    print(f"\nerror: {error}" if error else f"\n{closing_message()}", file=sys.stderr)
    print(f"({time.perf_counter() - start:.0f} s)")
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
