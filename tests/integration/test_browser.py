"""The HTML site in a real browser: every page whole and readable in a 1280 px window.

The book built once for the session (``conftest.book``) is served from ``_build/html`` on
127.0.0.1 and every page of the table of contents is loaded in headless Chromium (Debian's
``chromium``, driven by Playwright), 1280 px wide, in the light colour scheme and in the dark
one (the theme follows ``prefers-color-scheme``). A page fails when

* an element inside the article is wider than its box (``scrollWidth > clientWidth``):
  the reader would have to scroll sideways to read it, or it is cut off. Only the
  elements in ``SCROLLS_BY_DESIGN`` are exempt, each with its reason;
* the page itself scrolls sideways;
* the console logs an error, or the page throws;
* a request fails or answers 400 or more. The theme loads KaTeX's CSS and fonts (and
  a few more) from two CDNs when a page is viewed; those requests are answered from
  the same packages on npm (``npm pack``, kept in ``_build/cdn-cache``), so the pages
  render here as they do for a reader online;
* an image does not load;
* a link to the site itself leads nowhere: a path the server does not have, or a
  ``#fragment`` that no element of its target page carries.

The pages are loaded in the background as soon as the book is built (``browser.BrowserRun``,
started by ``conftest.finish_build``), while the other integration tests run; these tests run last.

A screenshot of the first screen of every page as a reader sees it, in each scheme, goes to
``_build/screenshots/{light,dark}/`` (git-ignored); with ``BOOK_SCREENSHOTS=full`` the light
ones are whole pages, top to bottom.

Without a theme (offline, and no ``BOOK_THEME``) there is no HTML, and without
``chromium`` no browser: the tests then skip, saying why. ``BOOK_BROWSER_TEST=require``
(set by ``.ci/run``) turns those skips into failures.
"""

from __future__ import annotations

import functools
import os
import urllib.error
import urllib.parse
import urllib.request

import pytest
from browser import MODES, TOC, Unavailable, Visit

REQUIRED = os.environ.get("BOOK_BROWSER_TEST", "") == "require"
CASES = [pytest.param(f, mode, id=f"{f}-{mode}") for mode in MODES for f in TOC]


def skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"BOOK_BROWSER_TEST=require, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def run(browser_run):
    """The background run of the browser over the site (started when the book was built)."""
    if isinstance(browser_run, str):
        skip_or_fail(browser_run)
    return browser_run


@pytest.fixture(scope="module")
def visits(run) -> dict[tuple[str, str], Visit]:
    """Every page of the table of contents, loaded in each colour scheme."""
    try:
        return run.visits()
    except Unavailable as why:
        skip_or_fail(str(why))


@pytest.fixture(scope="module")
def site(run, visits) -> str:
    """The base URL the site is served at."""
    return run.site


@pytest.fixture(scope="module")
def url_status(site):
    """HTTP status of a path on the local server (cached)."""

    @functools.cache
    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(
                site + urllib.parse.quote(path, safe="/%"), timeout=30
            ) as answer:
                return answer.status
        except urllib.error.HTTPError as err:
            return err.code

    return status


# -- the checks --------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "mode"), CASES)
def test_page_shows_in_its_colour_scheme(visits, file, mode) -> None:
    report = visits[file, mode].report
    assert report["article"], f"{file}: no <article> on {visits[file, mode].url}"
    assert report["dark"] == (mode == "dark"), (
        f"{file}: the page did not switch to its {mode} scheme"
    )


@pytest.mark.parametrize(("file", "mode"), CASES)
def test_page_fits_the_window(visits, file, mode) -> None:
    """Nothing inside the article is wider than its box, and the page never scrolls sideways."""
    visit = visits[file, mode]
    report = visit.report
    wide = [
        f"{o['kind']} ({o['how']}): {o['scrollWidth']} px in {o['clientWidth']} px, at {o['path']}"
        f"{' (#' + o['near'] + ')' if o['near'] else ''}: {o['text']!r}"
        for o in report["overflows"]
        if not o["allowed"]
    ]
    if report["pageScrollWidth"] > report["viewportWidth"]:
        wide.append(
            f"the page is {report['pageScrollWidth']} px wide in a {report['viewportWidth']} px window"
        )
    assert not wide, (
        f"{file} ({mode}, {visit.url}): {len(wide)} element(s) wider than their column:\n  "
        + "\n  ".join(wide)
    )


@pytest.mark.parametrize(("file", "mode"), CASES)
def test_page_logs_no_console_errors(visits, file, mode) -> None:
    visit = visits[file, mode]
    assert visit.complaints == [], f"{file} ({mode}): " + "\n  ".join(visit.complaints)


@pytest.mark.parametrize(("file", "mode"), CASES)
def test_page_requests_succeed(visits, file, mode) -> None:
    visit = visits[file, mode]
    assert visit.failed_requests == [], f"{file} ({mode}): " + "\n  ".join(visit.failed_requests)


@pytest.mark.parametrize(("file", "mode"), CASES)
def test_page_images_load(visits, file, mode) -> None:
    images = visits[file, mode].report["images"]
    broken = [i["src"] for i in images if not i["ok"]]
    assert broken == [], f"{file} ({mode}): images that did not load: {broken}"


@pytest.mark.parametrize("file", TOC)
def test_internal_links_resolve(visits, url_status, site, file) -> None:
    """Every link to the site itself reaches a page or file, and its #fragment an element there."""
    visit = visits[file, MODES[0]]
    by_path = {
        urllib.parse.urlsplit(v.url).path.rstrip("/") or "/": v
        for (f, m), v in visits.items()
        if m == MODES[0]
    }
    here = urllib.parse.urlsplit(visit.url).path.rstrip("/") or "/"
    broken = []
    for href in sorted(set(visit.report["links"])):
        parts = urllib.parse.urlsplit(href)
        if f"{parts.scheme}://{parts.netloc}" != site:
            continue
        path = urllib.parse.unquote(parts.path).rstrip("/") or "/"
        target = by_path.get(path)
        if target is None and url_status(parts.path or "/") >= 400:
            broken.append(f"{href}: HTTP {url_status(parts.path or '/')}")
            continue
        if parts.fragment:
            ids = (
                (visit if path == here else target).report["ids"]
                if (path == here or target)
                else None
            )
            if ids is not None and urllib.parse.unquote(parts.fragment) not in ids:
                broken.append(f"{href}: no element with id {parts.fragment!r} on that page")
    assert broken == [], f"{file}: links that lead nowhere:\n  " + "\n  ".join(broken)


def test_screenshots_saved(visits) -> None:
    missing = [
        str(v.url)
        for v in visits.values()
        if not v.screenshots or not all(s.is_file() for s in v.screenshots)
    ]
    assert missing == []
