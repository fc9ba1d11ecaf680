"""The verification page shows what ``crosscheck/results.json`` holds.

The page is executed once by the book build; this test reads that executed copy
(``_build/book/notebooks/``) rather than running it again.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "crosscheck" / "results.json"
EXECUTED = ROOT / "_build" / "book" / "notebooks" / "10_verification.ipynb"


def test_page_renders_the_results() -> None:
    nb = nbformat.read(EXECUTED, as_version=4)
    shown = json.dumps([c.get("outputs", []) for c in nb.cells])
    results = json.loads(RESULTS.read_text())
    assert results["created"] in shown
    for chapter in results["chapters"].values():
        for comp in chapter["comparisons"].values():
            for name, row in comp["parameters"].items():
                assert name in shown and f"{row['z_mean']:+.2f}" in shown
    assert "trend.amplitude: means differ by z" in shown  # the planted prior
