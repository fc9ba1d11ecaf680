"""Run the book's notebooks in the reader's environment (`make reader-env-check`).

    python binder/run_notebooks.py --requirements   # print environment.yml's pip packages
    python binder/run_notebooks.py [NOTEBOOK ...]   # execute the toc's notebooks (or these)

Run by the Python of a virtual environment made from this folder's environment.yml alone
(plus nbclient), so that a notebook needing a package that only the book's own environment
brings fails here. Needs the standard library, nbformat and nbclient only: no PyYAML, which
the reader's environment does not have.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pip_requirements() -> list[str]:
    """The entries under ``- pip:`` of binder/environment.yml, comments left out."""
    lines = (ROOT / "binder" / "environment.yml").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    found = []
    for line in lines[start + 1 :]:
        text = line.split("#", 1)[0].rstrip()
        if not text.strip():
            continue
        if len(text) - len(text.lstrip()) <= indent:
            break
        found.append(text.strip().removeprefix("- ").strip())
    return found


def toc_notebooks() -> list[Path]:
    """Every notebook of myst.yml's table of contents, in its order."""
    text = (ROOT / "myst.yml").read_text(encoding="utf-8")
    return [
        ROOT / name for name in re.findall(r"^\s*-\s*file:\s*(\S+\.ipynb)\s*$", text, re.MULTILINE)
    ]


def run(path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()


def main(args: list[str]) -> int:
    if args == ["--requirements"]:
        print("\n".join(pip_requirements()))
        return 0
    # The kernel is this environment's Python, whatever else is on PATH.
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    notebooks = [Path(a).resolve() for a in args] or toc_notebooks()
    if not notebooks:
        print("no notebooks found in myst.yml's table of contents", file=sys.stderr)
        return 1
    failed = []
    for path in notebooks:
        start = time.perf_counter()
        try:
            run(path)
        except Exception as error:  # report every notebook, then fail
            failed.append(path.name)
            print(f"FAILED {path.name}: {type(error).__name__}: {str(error)[-2000:]}", flush=True)
        else:
            print(f"ok     {path.name} ({time.perf_counter() - start:.0f} s)", flush=True)
    if failed:
        print(
            f"{len(failed)} of {len(notebooks)} notebooks failed in the reader's environment: {failed}"
        )
        return 1
    print(f"all {len(notebooks)} notebooks ran in the reader's environment")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
