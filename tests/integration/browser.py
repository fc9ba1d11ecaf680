"""Loading the book's HTML site in headless Chromium: the machinery of ``test_browser.py``.

``BrowserRun`` serves ``_build/html`` on 127.0.0.1 and visits every page in a thread of its
own, so that the pages load while other tests run; the browser tests wait for it.
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import functools
import http.server
import json
import mimetypes
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import websocket
import yaml
from build_book import toc_files

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CDN_CACHE = ROOT / "_build" / "cdn-cache"
WIDTH, HEIGHT = 1280, 900
MODES = ("light", "dark")
SETTLE_S = 1.0  # quiet network time after the load event before a page is inspected
SHOT_MAX_H = 8000  # taller pages are saved in several screenshots
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)
THEME_TOGGLE = "button.myst-theme-button"  # the theme's light/dark switch
IS_DARK = "document.documentElement.classList.contains('dark')"
CDN_PREFIXES = ("https://cdn.jsdelivr.net/npm/", "https://cdnjs.cloudflare.com/ajax/libs/")

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


# -- the site ----------------------------------------------------------------------------


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
        paths.setdefault(source, "/" if page["slug"] == project.get("index") else "/" + page["slug"].replace(".", "/"))
    return paths


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass


# -- the CDNs, answered from npm ---------------------------------------------------------


class CdnCache:
    """Files that the pages fetch from the CDNs, taken from the same npm packages."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.unavailable: dict[str, str] = {}
        self.lock = threading.Lock()  # the browsers of both colour schemes share the cache

    @staticmethod
    def split(url: str) -> tuple[str, str] | None:
        """``(package@version, path inside it)`` for a CDN URL, else None."""
        url = url.split("#")[0].split("?")[0]
        jsdelivr, cdnjs = CDN_PREFIXES
        if url.startswith(jsdelivr):
            rest = url[len(jsdelivr):]
            parts = rest.split("/", 2 if rest.startswith("@") else 1)
            count = 2 if rest.startswith("@") else 1
            return "/".join(parts[:count]), (parts[count] if len(parts) > count else "")
        if url.startswith(cdnjs):
            name, version, path = (url[len(cdnjs):].split("/", 2) + ["", ""])[:3]
            return f"{name}@{version}", path
        return None

    def package(self, spec: str) -> Path | None:
        with self.lock:
            return self._package(spec)

    def _package(self, spec: str) -> Path | None:
        target = self.folder / spec
        if target.is_dir():
            return target
        if spec in self.unavailable:
            return None
        npm = shutil.which("npm")
        if npm is None:
            self.unavailable[spec] = "npm is not on PATH"
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.folder) as tmp:
            run = subprocess.run([npm, "pack", spec, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=300)
            tarballs = list(Path(tmp).glob("*.tgz"))
            if run.returncode != 0 or len(tarballs) != 1:
                self.unavailable[spec] = f"`npm pack {spec}` failed: {run.stderr.strip()[-300:]}"
                return None
            unpacked = Path(tmp) / "unpacked"
            unpacked.mkdir()
            subprocess.run(["tar", "-xzf", str(tarballs[0]), "-C", str(unpacked), "--strip-components=1"], check=True)
            unpacked.rename(target)
        return target

    def answer(self, url: str) -> tuple[bytes, str] | str:
        """The body and content type for a CDN URL, or why there is none."""
        where = self.split(url)
        if where is None:
            return "not a CDN URL this test answers"
        spec, path = where
        package = self.package(spec)
        if package is None:
            return self.unavailable[spec]
        file = (package / path).resolve()
        if not (file.is_file() and file.is_relative_to(package.resolve())):
            return f"{spec} has no file {path!r}"
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        return file.read_bytes(), kind


# -- the browser -------------------------------------------------------------------------


class Chromium:
    """Headless Chromium with one tab, driven through the DevTools protocol."""

    def __init__(self, exe: str, cdn: CdnCache):
        self.profile = tempfile.mkdtemp(prefix="book-chromium-")
        self.proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        self.cdn = cdn
        self.cdn_failures: dict[str, str] = {}
        self.events: list[dict] = []
        self.next_id = 0
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.time() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not start: {self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30))
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], suppress_origin=True, timeout=120)
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable")
        self.call("Fetch.enable", patterns=[{"urlPattern": p + "*"} for p in CDN_PREFIXES])
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.handle(msg)

    def send(self, method: str, **params) -> None:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))

    def handle(self, msg: dict) -> None:
        if "method" not in msg:
            return
        if msg["method"] != "Fetch.requestPaused":
            self.events.append(msg)
            return
        params = msg["params"]
        url = params["request"]["url"]
        answer = self.cdn.answer(url)
        if isinstance(answer, str):
            self.cdn_failures[url] = answer
            self.send("Fetch.failRequest", requestId=params["requestId"], errorReason="Failed")
            return
        body, kind = answer
        self.send(
            "Fetch.fulfillRequest", requestId=params["requestId"], responseCode=200,
            responseHeaders=[{"name": "Content-Type", "value": kind}, {"name": "Access-Control-Allow-Origin", "value": "*"}],
            body=base64.b64encode(body).decode(),
        )

    def pump(self, seconds: float) -> None:
        end = time.time() + seconds
        self.ws.settimeout(0.2)
        try:
            while time.time() < end:
                try:
                    self.handle(json.loads(self.ws.recv()))
                except websocket.WebSocketTimeoutException:
                    pass
        finally:
            self.ws.settimeout(120)

    def settle(self, timeout: float = 90) -> None:
        """Wait for the load event, then for the network to stay quiet for SETTLE_S."""
        end = time.time() + timeout
        while not any(e["method"] == "Page.loadEventFired" for e in self.events):
            if time.time() > end:
                raise TimeoutError("the page did not finish loading")
            self.pump(0.2)
        while time.time() < end:
            seen = len(self.events)
            self.pump(SETTLE_S)
            if not any(e["method"].startswith(("Network.requestWillBeSent", "Fetch.")) for e in self.events[seen:]):
                return

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"inspecting the page failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, stem: Path, whole: bool = True) -> list[Path]:
        """The page top to bottom (``whole``), or its first screen, as PNG files."""
        height = int(self.call("Page.getLayoutMetrics")["cssContentSize"]["height"]) if whole else HEIGHT
        stem.parent.mkdir(parents=True, exist_ok=True)
        files = []
        for i, top in enumerate(range(0, height, SHOT_MAX_H)):
            clip = {"x": 0, "y": top, "width": WIDTH, "height": min(SHOT_MAX_H, height - top), "scale": 1}
            shot = self.call(
                "Page.captureScreenshot", format="png", captureBeyondViewport=whole, clip=clip, optimizeForSpeed=True
            )
            file = stem.with_name(stem.name + (f"-{i + 1}" if height > SHOT_MAX_H else "") + ".png")
            file.write_bytes(base64.b64decode(shot["data"]))
            files.append(file)
        return files


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


def complaints_and_failures(events: list[dict], cdn_failures: dict[str, str]) -> tuple[list[str], list[str]]:
    console, failed, urls = [], [], {}
    for event in events:
        method, p = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            urls[p["requestId"]] = p["request"]["url"]
        elif method == "Network.responseReceived" and p["response"]["status"] >= 400:
            failed.append((p["response"]["url"], f"HTTP {p['response']['status']}"))
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            url = urls.get(p["requestId"], "?")
            failed.append((url, cdn_failures.get(url, p.get("errorText"))))
        elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            console.append(f"console.{p['type']}: {text[:500]}")
        elif method == "Runtime.exceptionThrown":
            details = p["exceptionDetails"]
            console.append(f"uncaught: {(details.get('exception', {}).get('description') or details.get('text'))[:500]}")
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error" and p["entry"].get("source") != "network":
            console.append(f"log: {p['entry']['text'][:500]} {p['entry'].get('url', '')}".strip())
    failed = [f"{why}: {url}" for url, why in failed if not url.startswith(tuple(MAY_FAIL))]
    return console, sorted(set(failed))


def find_chromium() -> str | None:
    names = ("chromium", "chromium-browser", "google-chrome")
    return os.environ.get("CHROMIUM") or next((found for name in names if (found := shutil.which(name))), None)


def visit_all(site: str, exe: str, paths: dict[str, str]) -> dict[tuple[str, str], Visit]:
    """Load every page of the table of contents in each colour scheme; screenshot it.

    One browser per scheme, side by side: most of a visit is waiting for the page to settle.
    """
    shutil.rmtree(SHOTS, ignore_errors=True)
    cdn = CdnCache(CDN_CACHE)
    found = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(MODES), thread_name_prefix="chromium") as pool:
        for visits in pool.map(lambda mode: visit_in(mode, site, exe, paths, cdn), MODES):
            found.update(visits)
    return found


def visit_in(mode: str, site: str, exe: str, paths: dict[str, str], cdn: CdnCache) -> dict[tuple[str, str], Visit]:
    """Every page of the table of contents in the colour scheme ``mode``, in a browser of its own."""
    browser = Chromium(exe, cdn)
    found = {}
    try:
        browser.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": mode}])
        for file in TOC:
            url = site + paths[file]
            browser.events.clear()
            browser.cdn_failures.clear()
            browser.call("Page.navigate", url=url)
            browser.settle()
            # The theme starts in the system's scheme but, from one page to the next, may
            # come up in the other: a reader then flips it with the theme's toggle.
            if browser.evaluate(IS_DARK) != (mode == "dark"):
                browser.evaluate(f"document.querySelector({THEME_TOGGLE!r}).click()")
                browser.pump(0.5)
            report = browser.evaluate(f"{INSPECT}({json.dumps(list(SCROLLS_BY_DESIGN))})")
            name = paths[file].strip("/").replace("/", "-") or "index"
            # Whole pages in the first scheme; the first screen of each in the other (the
            # layout checks above cover the whole page in both).
            shots = browser.screenshot(SHOTS / mode / name, whole=mode == MODES[0])
            console, failed = complaints_and_failures(browser.events, browser.cdn_failures)
            found[file, mode] = Visit(url, report, console, failed, shots)
    finally:
        browser.close()
    return found


class BrowserRun:
    """The site served on 127.0.0.1 and every page visited, in a background thread."""

    def __init__(self, book) -> None:
        self.server: http.server.ThreadingHTTPServer | None = None
        self.site = ""
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="browser")
        self._visits = self._pool.submit(self._run, book)

    def _run(self, book) -> dict[tuple[str, str], Visit]:
        if "error" in book.verdict and not book.verdict.get("html"):
            raise RuntimeError(f"the book did not build, so there is no site to load:\n{book.tail(3000)}")
        if not book.verdict.get("html"):
            raise Unavailable(f"no HTML site was built: {book.verdict.get('no_html_reason') or 'unknown reason'}")
        exe = find_chromium()
        if exe is None:
            raise Unavailable("no chromium on PATH (Debian: apt-get install chromium; or set CHROMIUM=/path/to/it)")
        paths = page_paths()
        missing = [f for f in TOC if f not in paths]
        if missing:
            raise RuntimeError(f"the site's manifest lists no URL for {missing}")
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(HTML))
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.site = f"http://127.0.0.1:{self.server.server_address[1]}"
        return visit_all(self.site, exe, paths)

    def visits(self) -> dict[tuple[str, str], Visit]:
        """Every page in each colour scheme, once loaded; raises what the run raised."""
        return self._visits.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
