"""The report in a real browser: headless Chromium (Debian's) driven by Playwright.

Skipped only when Chromium or Playwright is missing AND ``CI`` is unset (tests/_servers.py's rule: under CI it
fails). The screenshot goes to ``$ZOOSCOPE_ARTIFACTS`` (default: the test's temp folder); with
``ZOOSCOPE_UPDATE_DOCS=1`` it also (re)writes ``docs/report.png``, the README's picture.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from _servers import unavailable

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    return os.environ.get("ZOOSCOPE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    exe = chromium_path()
    if exe is None:
        unavailable("Chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def opened(browser, report_file):
    """The report opened at 1280×800, with every console message, page error, dialog and request recorded; any
    request for something other than the file itself is aborted."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    seen = {"console": [], "errors": [], "dialogs": [], "requests": [], "blocked": []}
    url = report_file.resolve().as_uri()

    def route(r):
        seen["requests"].append(r.request.url)
        if r.request.url == url:
            r.continue_()
        else:
            seen["blocked"].append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: seen["console"].append((m.type, m.text)))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.goto(url, wait_until="load")
    page.wait_for_function("document.readyState === 'complete'")
    shots = [Path(os.environ.get("ZOOSCOPE_ARTIFACTS") or report_file.parent) / "report.png"]
    if os.environ.get("ZOOSCOPE_UPDATE_DOCS") == "1":
        shots.append(ROOT / "docs" / "report.png")
    for shot in shots:  # as opened, before any test clicks
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    seen["screenshot"] = shots[0]
    yield page, seen
    page.close()


def test_no_console_error_and_no_script_from_a_name(opened):
    _, seen = opened
    assert [m for m in seen["console"] if m[0] in ("error", "warning")] == []
    assert seen["errors"] == []
    assert seen["dialogs"] == []  # the hostile name's onerror=alert(1) never ran


def test_no_request_leaves_the_file(opened, report_file):
    _, seen = opened
    assert seen["blocked"] == []
    assert set(seen["requests"]) == {report_file.resolve().as_uri()}


def test_every_image_is_decoded(opened):
    page, _ = opened
    imgs = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
    assert len(imgs) >= 2  # the similarity heat map and the Task2Vec matrix
    assert all(done and width > 0 for _, done, width in imgs), imgs
    svgs = page.evaluate("Array.from(document.querySelectorAll('figure > svg')).map(s => s.getBBox().width)")
    assert len(svgs) == 1 and svgs[0] > 0  # the zoo map, inline


def test_every_model_name_is_in_the_dom(opened, report_zoo):
    page, _ = opened
    names = list(report_zoo.models()["name"])
    table = page.locator("#models-table tbody tr td:first-child").all_inner_texts()
    assert sorted(table) == sorted(names)
    titles = page.evaluate("Array.from(document.querySelectorAll('svg .pt > title')).map(t => t.textContent)")
    assert sorted(titles) == sorted(names)  # each point of the map is titled by its model's name
    assert page.locator("b").count() == 0 and page.locator("img[src='x']").count() == 0


def test_the_models_table_sorts_on_a_header_click(opened):
    page, _ = opened
    first_column = "#models-table tbody tr td:first-child"
    header = page.locator("#models-table th", has_text="name")
    header.click()
    asc = page.locator(first_column).all_inner_texts()
    assert asc == sorted(asc, key=str.lower)
    header.click()
    assert page.locator(first_column).all_inner_texts() == asc[::-1]
    page.locator("#models-table th", has_text="parameters").click()  # numbers sort as numbers
    params = [int(t.replace(",", "")) for t in page.locator("#models-table tbody tr td:nth-child(5)").all_inner_texts()]
    assert params == sorted(params)


def test_no_horizontal_scroll_at_1280(opened):
    page, seen = opened
    width, client = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width <= client
    assert seen["screenshot"].stat().st_size > 10_000  # the artifact
