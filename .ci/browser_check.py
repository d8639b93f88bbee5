"""Open every page of the built book in headless Chromium, as a reader would.

Serves the HTML on 127.0.0.1 and drives Debian's Chromium through chromedriver
(`make browser-deps` installs both). For every page of the table of contents:
no console errors, every image displayed (naturalWidth > 0), math rendered by
MathJax where the page has math, and a sidebar that links to every page of the
table of contents; then the search page must find a term. A full-page screenshot
of each page goes to _build/screenshots/. Before all that, a self-check breaks a
copy of the book (a missing image, a script error, math on a page without MathJax)
and adds math to a page that has MathJax: the check must report the first three
and see the last one rendered, or it is not trusted.

MathJax normally comes from a CDN, which a machine without internet cannot reach;
the local server rewrites that URL to the same MathJax 3 release from the
`django-static-mathjax` package, so math is checked offline.

Usage: python .ci/browser_check.py [_build/html] [--toc _toc.yml]
           [--screenshots _build/screenshots] [--no-self-check]
"""

import argparse
import base64
import functools
import http.server
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import quote

import yaml
from check_html import toc_files  # .ci/, this script's folder

ROOT = Path(__file__).resolve().parents[1]
# Debian's packages; elsewhere (a GitHub runner's Chrome) name them in the environment.
CHROMIUM = os.environ.get("FITBOOK_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FITBOOK_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = (  # what works as root on a machine without internet
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)
TIME_LIMIT_S = 110  # the whole check, self-check included
PAGE_TIMEOUT_S = 30
MAX_SCREENSHOT_HEIGHT = 8000  # pixels; very long pages are cut there
# Console errors that are not the book's and that it cannot fix from its config:
KNOWN_CONSOLE_ERRORS = (
    # sphinx-thebe 0.3.1 under Sphinx 7.4 puts its inline config script on every
    # page twice; the second copy fails. The book has no live (thebe) code cells.
    "Identifier 'THEBE_JS_URL' has already been declared",
    # The browser asks the server root for a favicon by itself; no page links one.
    "/favicon.ico - Failed to load resource",
)
SEARCH_TERMS = ("train_step", "load_fashion_mnist")  # first one indexed is used
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/"
MATHJAX_LOCAL = "/__mathjax__/"  # served from the django-static-mathjax package


def mathjax_dir():
    """Directory holding MathJax 3's es5/ build, from django-static-mathjax."""
    import mathjax

    return Path(mathjax.__file__).parent / "static" / "mathjax"


class BookHandler(http.server.SimpleHTTPRequestHandler):
    """Serve the book; point MathJax at the local copy; log nothing."""

    def translate_path(self, path):
        if path.startswith(MATHJAX_LOCAL):
            relative = path[len(MATHJAX_LOCAL) :].split("?")[0]
            return str(mathjax_dir() / relative)
        return super().translate_path(path)

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if path.suffix != ".html" or not path.is_file():
            return super().send_head()
        body = path.read_bytes().replace(MATHJAX_CDN.encode(), MATHJAX_LOCAL.encode())
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return _BytesFile(body)

    def log_message(self, *args):
        pass


class _BytesFile:
    """The minimal file object SimpleHTTPRequestHandler copies a body from."""

    def __init__(self, data):
        self.data = data

    def read(self, *args):
        data, self.data = self.data, b""
        return data

    def close(self):
        pass


def serve(html_root):
    """Start a server for ``html_root`` on 127.0.0.1; return (server, base url)."""
    handler = functools.partial(BookHandler, directory=str(html_root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def start_browser(profile_dir):
    """Headless Chromium through chromedriver, keeping the console log."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    driver.set_script_timeout(PAGE_TIMEOUT_S)
    return driver


# Wait for every image to finish (loaded or failed); return the broken ones.
BROKEN_IMAGES_JS = """
const done = arguments[arguments.length - 1];
const images = [...document.images];
Promise.all(images.map(img => img.complete ? null : new Promise(ok => {
  img.addEventListener('load', ok); img.addEventListener('error', ok);
}))).then(() => done(images.filter(i => i.naturalWidth === 0)
                           .map(i => i.getAttribute('src'))));
"""

# Wait for MathJax (if the page loads it); count math elements and rendered ones.
MATH_JS = """
const done = arguments[arguments.length - 1];
const math = [...document.querySelectorAll('main .math')];
const report = () => done({
  math: math.length,
  rendered: math.filter(m => m.querySelector('mjx-container')).length,
  errors: document.querySelectorAll('mjx-merror').length,
  loaded: !!(window.MathJax && window.MathJax.startup),
});
if (!math.length) { report(); }
else {
  const wait = (tries) => (window.MathJax && window.MathJax.startup
      && window.MathJax.startup.promise)
    ? window.MathJax.startup.promise.then(report, report)
    : (tries ? setTimeout(() => wait(tries - 1), 100) : report());
  wait(100);
}
"""

SIDEBAR_LINKS_JS = """
return [...document.querySelectorAll('.bd-sidebar-primary a[href]')]
  .map(a => new URL(a.getAttribute('href'), document.baseURI).pathname);
"""


def console_errors(driver):
    """SEVERE console entries since the last read, but for KNOWN_CONSOLE_ERRORS."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE"
        and not any(known in e["message"] for known in KNOWN_CONSOLE_ERRORS)
    ]


def screenshot(driver, path, width=1280):
    """Save a full-page PNG of the current page (cut at MAX_SCREENSHOT_HEIGHT)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    height = int(min(size["height"], MAX_SCREENSHOT_HEIGHT))
    # A window as tall as the page, at the desktop width, so the layout is the
    # one a reader sees (sidebars included), only longer.
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1}
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {**metrics, "mobile": False}
    )
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def check_page(driver, base, name, toc_paths, shots=None):
    """Return the problems a reader would meet on page ``name`` (a toc entry)."""
    driver.get_log("browser")  # drop what earlier pages left
    driver.get(base + quote(f"{name}.html"))
    problems = []
    broken = driver.execute_async_script(BROKEN_IMAGES_JS)
    problems += [f"image not displayed (naturalWidth 0): {src}" for src in broken]
    math = driver.execute_async_script(MATH_JS)
    if math["math"] and (math["rendered"] < math["math"] or math["errors"]):
        problems.append(
            f"math not rendered: {math['rendered']} of {math['math']} rendered, "
            f"{math['errors']} MathJax errors, MathJax loaded: {math['loaded']}"
        )
    sidebar = set(driver.execute_script(SIDEBAR_LINKS_JS))
    missing = sorted(p for p in toc_paths if p not in sidebar and p != f"/{name}.html")
    if missing:
        problems.append(f"sidebar does not link to {missing}")
    problems += [f"console error: {message}" for message in console_errors(driver)]
    if shots is not None:
        screenshot(driver, shots / f"{name.replace('/', '_')}.png")
    return problems, math["math"]


def check_search(driver, base, html_root):
    """Search for the first indexed term of SEARCH_TERMS; return problems."""
    index = (html_root / "searchindex.js").read_text()
    term = next((t for t in SEARCH_TERMS if t.lower() in index.lower()), None)
    if term is None:
        return [f"none of {SEARCH_TERMS} is in searchindex.js"]
    driver.get(base + f"search.html?q={quote(term)}")
    hits = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const poll = (tries) => {
          const hits = [...document.querySelectorAll('#search-results li a')];
          if (hits.length || !tries) { done(hits.map(a => a.textContent)); }
          else { setTimeout(() => poll(tries - 1), 100); }
        };
        poll(150);
        """
    )
    problems = [f"console error: {m}" for m in console_errors(driver)]
    if not hits:
        problems.append(f"search for {term!r} found nothing")
    else:
        print(f"ok   search: {term!r} found on {len(hits)} page(s): {hits[:4]}")
    return problems


MATH_HTML = (
    '<p><span class="math notranslate nohighlight">'
    "\\(e^{i\\pi} + 1 = 0\\)</span></p>"
)


def break_a_copy(html_root, broken, unrendered, tmp):
    """Copy the build. Page ``broken`` gets a missing image, a script error and
    math with MathJax; page ``unrendered`` gets math and loses MathJax."""
    copy = Path(tmp) / "html"
    shutil.copytree(html_root, copy)
    page = copy / f"{broken}.html"
    extra = (
        '<img src="_images/deliberately-missing.png" alt="missing">'
        "<script>throw new Error('deliberate script error')</script>" + MATH_HTML
    )
    mathjax = f'<script defer src="{MATHJAX_CDN}es5/tex-mml-chtml.js"></script>'
    text = page.read_text().replace("</main>", extra + "</main>", 1)
    page.write_text(text.replace("</head>", mathjax + "</head>", 1))
    page = copy / f"{unrendered}.html"
    text = page.read_text().replace("</main>", MATH_HTML + "</main>", 1)
    page.write_text(text.replace(MATHJAX_CDN, "https://mathjax.invalid/"))
    return copy


def self_check(driver, html_root, names, toc_paths, tmp):
    """The check must catch a broken page; return True if it does."""
    broken, unrendered = names[-1], names[0]
    copy = break_a_copy(html_root, broken, unrendered, tmp)
    server, base = serve(copy)
    try:
        problems, n_math = check_page(driver, base, broken, toc_paths)
        missed, _ = check_page(driver, base, unrendered, toc_paths)
    finally:
        server.shutdown()
    def seen(text, found):
        return any(text in problem for problem in found)

    results = {
        "a missing image is reported": seen("deliberately-missing", problems),
        "a script error is reported": seen("deliberate script error", problems),
        "math renders offline": n_math == 1 and not seen("math not rendered", problems),
        "math without MathJax is reported": seen("math not rendered", missed),
    }
    for label, ok in results.items():
        print(f"{'ok  ' if ok else 'FAIL'} self-check: {label}")
    if not all(results.values()):
        print("self-check problems seen:", *problems, *missed, sep="\n  ")
    return all(results.values())


def on_timeout(signum, frame):
    raise TimeoutError(f"the browser check took longer than {TIME_LIMIT_S}s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("html_root", nargs="?", default=ROOT / "_build" / "html")
    parser.add_argument("--toc", default=ROOT / "_toc.yml")
    parser.add_argument("--screenshots", default=ROOT / "_build" / "screenshots")
    parser.add_argument("--no-self-check", action="store_true")
    args = parser.parse_args(argv)
    html_root, shots = Path(args.html_root), Path(args.screenshots)
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not Path(tool).is_file():
            print(f"FAIL: {tool} is missing; run `make browser-deps` to install it")
            return 1
    if not (html_root / "index.html").is_file():
        print(f"FAIL: {html_root} holds no built book (no index.html); build it first")
        return 1
    names = toc_files(yaml.safe_load(Path(args.toc).read_text()))
    toc_paths = {f"/{name}.html" for name in names}
    signal.signal(signal.SIGALRM, on_timeout)
    signal.alarm(TIME_LIMIT_S)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        driver = start_browser(Path(tmp) / "profile")
        server, base = serve(html_root)
        try:
            if not args.no_self_check:
                trusted = self_check(driver, html_root, names, toc_paths, tmp)
                failures += not trusted
            for name in names:
                problems, n_math = check_page(driver, base, name, toc_paths, shots)
                for problem in problems:
                    print(f"FAIL {name}: {problem}")
                if not problems:
                    rendered = f" ({n_math} math rendered)" if n_math else ""
                    print(f"ok   {name}{rendered}")
                failures += len(problems)
            problems = check_search(driver, base, html_root)
            for problem in problems:
                print(f"FAIL search: {problem}")
            failures += len(problems)
        finally:
            signal.alarm(0)
            server.shutdown()
            driver.quit()
    print(f"screenshots: {shots}/")
    if failures:
        print(f"{failures} problem(s) seen in the browser")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
