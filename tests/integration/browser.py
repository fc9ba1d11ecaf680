"""Loading the book's HTML site in headless Chromium with Playwright: the machinery of ``test_browser.py``.

``BrowserRun`` serves ``_build/html`` on 127.0.0.1 and, in a thread of its own, loads every page
of the table of contents in each colour scheme (one browser context per scheme, side by side),
so that the pages load while other tests run; the browser tests wait for it. Playwright drives
the system's Chromium (Debian's ``chromium``, or ``CHROMIUM=/path``) through its executable path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import http.server
import json
import mimetypes
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import yaml
from build_book import toc_files
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CDN_CACHE = ROOT / "_build" / "cdn-cache"
WIDTH, HEIGHT = 1280, 900
MODES = ("light", "dark")
SHOT_MAX_H = 8000  # taller pages are saved in several screenshots
# The first screen of every page in each scheme; BOOK_SCREENSHOTS=full: whole pages in the light
# one (about 10 s more). The layout checks cover whole pages either way.
FULL_PAGES = os.environ.get("BOOK_SCREENSHOTS") == "full"
THEME_TOGGLE = "button.myst-theme-button"  # the theme's light/dark switch
IS_DARK = "document.documentElement.classList.contains('dark')"
# The CDNs the theme loads KaTeX's CSS and fonts (and a few more) from: package@version/path.
CDN = re.compile(
    r"^https://(?:cdn\.jsdelivr\.net/npm/(@[^/]+/[^@/]+|[^@/]+)@|cdnjs\.cloudflare\.com/ajax/libs/([^/]+)/)([^/]+)/([^?#]*)"
)

# Theme elements inside the article that are wider than their box by design, as CSS
# selectors (an element inside a match is exempt too), each with the reason. Content a
# reader must read (equations, tables, code, outputs, cards, signatures) never belongs
# here: it must fit its column.
SCROLLS_BY_DESIGN: dict[str, str] = {
    ".sr-only": "text for screen readers only, clipped to a 1 px box by design (the theme's icon buttons)",
    ".katex-mathml": (
        "KaTeX's MathML copy of each formula for screen readers, clipped to a 1 px box by design; "
        "the formula a reader sees (.katex-html) is checked"
    ),
    ".myst-outline-section": (
        "the theme's outline of the page in the right margin, a vertically scrolling list that the "
        "theme sets 8 px wider than its margin column on each side; it stays inside the window"
    ),
}

# Requests that may fail, as URL prefixes, each with the reason.
MAY_FAIL: dict[str, str] = {
    "https://cdn.jsdelivr.net/npm/jupyter-matplotlib@0.11.3/": (
        "the stylesheet of ipympl's interactive-figure widget, which the theme requests on every "
        "page; the book has no such widget, and the npm registry here does not hold that version"
    ),
}


TOC = toc_files(yaml.safe_load((ROOT / "myst.yml").read_text(encoding="utf-8")))


class Unavailable(Exception):
    """The pages cannot be loaded here (no site, no browser): the tests skip, saying why."""


def page_paths() -> dict[str, str]:
    """URL path of every built page by source file, from the site's own manifest."""
    config = json.loads((ROOT / "_build" / "site" / "config.json").read_text(encoding="utf-8"))
    project = config["projects"][0]
    paths = {}
    for content in (ROOT / "_build" / "site" / "content").glob("*.json"):
        page = json.loads(content.read_text(encoding="utf-8"))
        if "location" not in page or "slug" not in page:
            continue
        source = page["location"].lstrip("/")
        paths.setdefault(
            source,
            "/" if page["slug"] == project.get("index") else "/" + page["slug"].replace(".", "/"),
        )
    return paths


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass


class CdnCache:
    """Files that the pages fetch from the CDNs, taken from the same npm packages (``npm pack``)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.unavailable: dict[str, str] = {}
        self.lock = threading.Lock()

    def package(self, spec: str) -> Path | None:
        with self.lock:
            target = self.folder / spec
            if target.is_dir() or spec in self.unavailable:
                return target if target.is_dir() else None
            npm = shutil.which("npm")
            if npm is None:
                self.unavailable[spec] = "npm is not on PATH"
                return None
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.folder) as tmp:
                run = subprocess.run(
                    [npm, "pack", spec, "--silent"],
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                tarballs = list(Path(tmp).glob("*.tgz"))
                if run.returncode != 0 or len(tarballs) != 1:
                    self.unavailable[spec] = (
                        f"`npm pack {spec}` failed: {run.stderr.strip()[-300:]}"
                    )
                    return None
                (Path(tmp) / "unpacked").mkdir()
                subprocess.run(
                    [
                        "tar",
                        "-xzf",
                        str(tarballs[0]),
                        "-C",
                        f"{tmp}/unpacked",
                        "--strip-components=1",
                    ],
                    check=True,
                )
                (Path(tmp) / "unpacked").rename(target)
            return target

    def answer(self, url: str) -> tuple[bytes, str] | str:
        """The body and content type for a CDN URL, or why there is none."""
        match = CDN.match(url)
        if match is None:
            return "not a CDN URL this test answers"
        npm_name, cdnjs_name, version, path = match.groups()
        spec = f"{npm_name or cdnjs_name}@{version}"
        package = self.package(spec)
        if package is None:
            return self.unavailable[spec]
        file = (package / path).resolve()
        if not (file.is_file() and file.is_relative_to(package.resolve())):
            return f"{spec} has no file {path!r}"
        return file.read_bytes(), mimetypes.guess_type(file.name)[0] or "application/octet-stream"


# What a page reports about itself once loaded (run in the page, awaited).
INSPECT = r"""
(async (allowed) => {
  for (const img of document.images) if (img.loading === 'lazy') img.loading = 'eager';
  const decoded = Promise.all([...document.images].map(i => i.decode().catch(() => null)));
  await Promise.race([decoded, new Promise(r => setTimeout(r, 15000))]);
  await document.fonts.ready;
  const article = document.querySelector('article');
  const text = el => (el.innerText || el.textContent || '').replace(/\s+/g, ' ').trim();
  const kind = el => {
    if (el.tagName === 'TABLE' || el.querySelector('table') || el.closest('table')) return 'table';
    if (el.closest('.katex-display, .katex, math') || el.querySelector('.katex')) return 'equation';
    if (el.closest('.myst-card')) return 'card';
    if (el.closest('[class*="output"]')) return 'output';
    if (el.closest('pre, code') || el.querySelector('pre, code')) return 'code';
    if (el.closest('figure') || el.querySelector('img, svg')) return 'figure';
    return 'other';
  };
  const context = el => {
    const holder = el.closest('[id]');
    return holder ? holder.id : '';
  };
  const path = el => {
    const steps = [];
    for (let e = el; e && e !== article; e = e.parentElement) {
      const cls = [...e.classList].slice(0, 2).join('.');
      steps.unshift(e.tagName.toLowerCase() + (cls ? '.' + cls : ''));
    }
    return steps.slice(-4).join(' > ');
  };
  // The grid cell (the column) an element sits in.
  const cell = el => {
    let e = el;
    while (e.parentElement && e.parentElement !== article && getComputedStyle(e.parentElement).display !== 'grid') e = e.parentElement;
    return e.getBoundingClientRect();
  };
  const wide = article
    ? [article, ...article.querySelectorAll('*')].filter(el => el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
    : [];
  // Scrolls sideways or cuts its content: a box that does not show what overflows it.
  const scrolls = new Set(wide.filter(el => getComputedStyle(el).overflowX !== 'visible'));
  // Shows its overflow, and that reaches past the edge of its column.
  const spills = new Set(wide.filter(el => !scrolls.has(el)
    && el.getBoundingClientRect().left + el.clientLeft + el.scrollWidth > cell(el).right + 1));
  const inside = (el, set) => { for (let e = el.parentElement; e; e = e.parentElement) if (set.has(e)) return true; return false; };
  const flagged = [...scrolls, ...[...spills].filter(el =>
    !inside(el, scrolls) && ![...spills].some(o => o !== el && el.contains(o)))];
  flagged.sort((a, b) => (a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING) ? -1 : 1);
  const overflows = flagged.map(el => ({
    kind: kind(el), how: scrolls.has(el) ? 'scrolls' : 'spills', path: path(el), near: context(el),
    text: text(el).slice(0, 100), scrollWidth: el.scrollWidth, clientWidth: el.clientWidth,
    allowed: allowed.find(sel => el.closest(sel)) || null,
  }));
  return {
    article: !!article,
    dark: document.documentElement.classList.contains('dark'),
    pageScrollWidth: document.documentElement.scrollWidth,
    viewportWidth: window.innerWidth,
    overflows,
    images: [...document.images].map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0})),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  };
})
"""


@dataclasses.dataclass
class Visit:
    url: str
    report: dict
    complaints: list[str]
    failed_requests: list[str]
    screenshots: list[Path]


async def visit_in(
    browser, mode: str, site: str, paths: dict[str, str], cdn: CdnCache
) -> dict[tuple[str, str], Visit]:
    """Every page of the table of contents in the colour scheme ``mode``, in a browser context of its own."""
    context = await browser.new_context(
        viewport={"width": WIDTH, "height": HEIGHT}, color_scheme=mode
    )
    cdn_failures: dict[str, str] = {}

    async def from_npm(route) -> None:
        answer = await asyncio.to_thread(cdn.answer, route.request.url)
        if isinstance(answer, str):
            cdn_failures[route.request.url] = answer
            await route.abort()
        else:
            await route.fulfill(
                body=answer[0], content_type=answer[1], headers={"Access-Control-Allow-Origin": "*"}
            )

    await context.route(CDN, from_npm)
    page = await context.new_page()
    complaints: list[str] = []
    failed: list[tuple[str, str]] = []
    # A resource that fails to load is also logged to the console; the request check reports it.
    page.on(
        "console",
        lambda m: (
            m.type in ("error", "assert")
            and not m.text.startswith("Failed to load resource")
            and complaints.append(f"console.{m.type}: {m.text[:500]}")
        ),
    )
    page.on("pageerror", lambda err: complaints.append(f"uncaught: {str(err)[:500]}"))
    page.on("response", lambda r: r.status >= 400 and failed.append((r.url, f"HTTP {r.status}")))
    page.on(
        "requestfailed",
        lambda r: (
            r.failure != "net::ERR_ABORTED"
            and failed.append((r.url, cdn_failures.get(r.url, r.failure)))
        ),
    )
    found = {}
    for file in TOC:
        url = site + paths[file]
        complaints.clear()
        failed.clear()
        await page.goto(url, wait_until="networkidle", timeout=120_000)
        # The theme starts in the system's scheme but, from one page to the next, may come up
        # in the other: a reader then flips it with the theme's toggle.
        if await page.evaluate(IS_DARK) != (mode == "dark"):
            await page.click(THEME_TOGGLE)
            await page.wait_for_timeout(500)
        report = await page.evaluate(INSPECT, list(SCROLLS_BY_DESIGN))
        stem = SHOTS / mode / (paths[file].strip("/").replace("/", "-") or "index")
        height = (
            await page.evaluate("document.documentElement.scrollHeight")
            if FULL_PAGES and mode == MODES[0]
            else HEIGHT
        )
        shots = [
            stem.with_name(
                f"{stem.name}-{i + 1}.png" if height > SHOT_MAX_H else f"{stem.name}.png"
            )
            for i in range(-(-height // SHOT_MAX_H))
        ]
        for i, shot in enumerate(shots):
            top = i * SHOT_MAX_H
            clip = {"x": 0, "y": top, "width": WIDTH, "height": min(SHOT_MAX_H, height - top)}
            await page.screenshot(path=shot, full_page=height > HEIGHT, clip=clip)
        allowed = tuple(MAY_FAIL)
        found[file, mode] = Visit(
            url,
            report,
            list(complaints),
            sorted({f"{why}: {u}" for u, why in failed if not u.startswith(allowed)}),
            shots,
        )
    await context.close()
    return found


async def visit_all(site: str, exe: str, paths: dict[str, str]) -> dict[tuple[str, str], Visit]:
    """Load every page of the table of contents in each colour scheme, side by side; screenshot it."""
    shutil.rmtree(SHOTS, ignore_errors=True)
    cdn = CdnCache(CDN_CACHE)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=exe, args=["--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        )
        try:
            found = {}
            for visits in await asyncio.gather(
                *(visit_in(browser, m, site, paths, cdn) for m in MODES)
            ):
                found.update(visits)
            return found
        finally:
            await browser.close()


def find_chromium() -> str | None:
    names = ("chromium", "chromium-browser", "google-chrome")
    return os.environ.get("CHROMIUM") or next(
        (found for name in names if (found := shutil.which(name))), None
    )


class BrowserRun:
    """The site served on 127.0.0.1 and every page visited, in a background thread."""

    def __init__(self, book) -> None:
        self.server: http.server.ThreadingHTTPServer | None = None
        self.site = ""
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="browser"
        )
        self._visits = self._pool.submit(self._run, book)

    def _run(self, book) -> dict[tuple[str, str], Visit]:
        if not book.verdict.get("html"):
            raise RuntimeError(
                f"the book did not build, so there is no site to load:\n{book.tail(3000)}"
            )
        exe = find_chromium()
        if exe is None:
            raise Unavailable(
                "no chromium on PATH (Debian: apt-get install chromium; or set CHROMIUM=/path/to/it)"
            )
        paths = page_paths()
        missing = [f for f in TOC if f not in paths]
        if missing:
            raise RuntimeError(f"the site's manifest lists no URL for {missing}")
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(HTML))
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.site = f"http://127.0.0.1:{self.server.server_address[1]}"
        return asyncio.run(visit_all(self.site, exe, paths))

    def visits(self) -> dict[tuple[str, str], Visit]:
        """Every page in each colour scheme, once loaded; raises what the run raised."""
        return self._visits.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
