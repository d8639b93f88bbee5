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

Readable without sideways scrolling: every page is also laid out for a laptop
(1280 px) and a phone (390 px). At 1280 px no code block may be wider than its box
(listings fit, outputs wrap: book/_static/fitbook.css); at 390 px code may scroll
inside its box, but the page itself may not scroll sideways. Every figure must stay
legible in the theme's light and dark modes: a figure with transparent pixels needs
a light colour behind them. The self-check adds a listing too long for a laptop, a
box too wide for a phone and a transparent figure, all of which must be reported,
and an opaque figure, which must pass. A table per width (blocks wider than their
box, output lines longer than their box, tables scrolling in their own box, pages
wider than the window) ends the report; the pages of SCREENSHOT_PAGES are also
shot at each width and in dark mode. `.ci/measure_width.py` prints that table for
any widths.

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
import struct
import sys
import tempfile
import threading
import zlib
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
TIME_LIMIT_S = 150  # the whole check, self-check included (make: timeout 180)
PAGE_TIMEOUT_S = 30
MAX_SCREENSHOT_HEIGHT = 8000  # pixels; very long pages are cut there
# Layout: a laptop, where no code block may be wider than its box (listings fit,
# outputs wrap), and a phone, where the page itself must not scroll sideways
# (code may scroll inside its box there).
LAPTOP_WIDTH, PHONE_WIDTH = 1280, 390
LAYOUT_WIDTHS = (LAPTOP_WIDTH, PHONE_WIDTH)
WINDOW_HEIGHT = 1000
SCREENSHOT_PAGES = ("book/gan",)  # also shot at every width and in dark mode
# A figure with transparent pixels needs a light colour behind them: its lines and
# labels are dark (matplotlib's), and on the dark theme's background they vanish.
MAX_TRANSPARENT_SHARE = 0.01
MIN_BACKGROUND_LUMINANCE = 0.6
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

# Layout at the current window width: every visible code block of the article
# (a listing: literalinclude, code-block or cell input; or a cell's output), whether
# it is wider than its box, its longest line and the characters the box holds; the
# tables; and whether the page itself is wider than the window, with the outermost
# elements that stick out (those not inside a box that scrolls or clips them).
LAYOUT_JS = """
document.querySelectorAll('details').forEach(d => { d.open = true; });
const visible = el => el.getClientRects().length > 0;
const article = document.querySelector('.bd-article') || document.body;
const where = el => {
  const section = el.closest('section[id]');
  return section ? '#' + section.id : '';
};
const pres = [...article.querySelectorAll('pre')].filter(visible);
// The width of a character of code (every block has the same font and size).
const probe = document.createElement('span');
probe.textContent = 'x'.repeat(100);
probe.style.whiteSpace = 'pre';
if (pres.length) { pres[0].appendChild(probe); }
const charWidth = probe.getBoundingClientRect().width / 100;
probe.remove();
const blocks = pres.map(pre => {
  const style = getComputedStyle(pre);
  const inner = pre.clientWidth - parseFloat(style.paddingLeft)
    - parseFloat(style.paddingRight);
  const lines = pre.textContent.replace(/\\n$/, '').split('\\n');
  const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
  return {
    kind: pre.closest('.cell_output, div.output') ? 'output' : 'listing',
    over: pre.scrollWidth > pre.clientWidth + 1,
    holds: Math.floor(inner / charWidth + 0.01),
    longest: longest.length,
    longer: lines.filter(l => l.length * charWidth > inner + 1).length,
    where: where(pre),
    line: longest.trim().slice(0, 70),
  };
});
const tables = [...article.querySelectorAll('table')].filter(visible).map(t => ({
  over: t.getBoundingClientRect().width > t.parentElement.clientWidth + 1,
  where: where(t),
}));
const root = document.documentElement;
const width = root.clientWidth;  // the window without its vertical scrollbar
const clips = el => {
  for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
    const s = getComputedStyle(a);
    if (s.position === 'fixed' || s.overflowX !== 'visible') { return true; }
  }
  return false;
};
const all = root.scrollWidth <= width ? [] : [...document.body.querySelectorAll('*')];
const culprits = all
  .filter(el => visible(el) && el.getBoundingClientRect().right > width + 1
    && getComputedStyle(el).position !== 'fixed' && !clips(el)
    && !(el.parentElement.getBoundingClientRect().right > width + 1
         && el.parentElement !== document.body))
  .slice(0, 5)
  .map(el => [el.tagName.toLowerCase(), ...el.classList].join('.')
             + ` ${where(el)} (${Math.round(el.getBoundingClientRect().right)}px)`);
return {blocks, tables, page: root.scrollWidth, window: width, culprits};
"""

# Every image of the article in the current colour mode: the share of its pixels
# that are (partly) transparent, and the colour that shows through them: the
# image's own background or the first ancestor's that is opaque.
IMAGES_JS = """
const done = arguments[arguments.length - 1];
const mode = arguments[0];
const images = [...document.querySelectorAll('.bd-article img')]
  .filter(img => img.naturalWidth > 0 && img.getClientRects().length);
if (!images.length) { done([]); return; }
document.documentElement.dataset.theme = mode;
const rgba = c => (c.match(/[\\d.]+/g) || [0, 0, 0, 0]).map(Number);
const behind = el => {
  for (let a = el; a; a = a.parentElement) {
    const [r, g, b, alpha = 1] = rgba(getComputedStyle(a).backgroundColor);
    if (alpha > 0.9) { return [r, g, b]; }
  }
  return [255, 255, 255];  // the browser's canvas
};
const luminance = ([r, g, b]) => (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
const measure = img => {
  const canvas = document.createElement('canvas');
  const scale = Math.min(1, 400 / Math.max(img.naturalWidth, img.naturalHeight, 1));
  canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
  canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
  const context = canvas.getContext('2d');
  let transparent = null;
  try {
    context.drawImage(img, 0, 0, canvas.width, canvas.height);
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let count = 0;
    for (let i = 3; i < data.length; i += 4) { count += data[i] < 250; }
    transparent = count / (data.length / 4);
  } catch (error) { transparent = null; }
  const background = behind(img);
  return {src: img.getAttribute('src'), transparent, background,
          light: luminance(background)};
};
done(images.map(measure));  // getComputedStyle sees the new mode at once
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


def set_width(driver, width, height=WINDOW_HEIGHT):
    """Lay the current page out for a window ``width`` CSS pixels wide."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1}
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {**metrics, "mobile": False}
    )


def screenshot(driver, path, width=LAPTOP_WIDTH):
    """Save a full-page PNG of the current page (cut at MAX_SCREENSHOT_HEIGHT)."""
    set_width(driver, width)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    height = int(min(size["height"], MAX_SCREENSHOT_HEIGHT))
    # A window as tall as the page, at the given width, so the layout is the
    # one a reader sees (sidebars included), only longer.
    set_width(driver, width, height)
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def measure_layout(driver, widths):
    """LAYOUT_JS's measurements of the current page at each of ``widths``."""
    try:
        layouts = {}
        for width in widths:
            set_width(driver, width)
            layouts[width] = driver.execute_script(LAYOUT_JS)
        return layouts
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def layout_problems(layouts):
    """What a reader would have to scroll sideways for, from measure_layout."""
    problems = []
    for width, layout in layouts.items():
        if width >= LAPTOP_WIDTH:
            for block in layout["blocks"]:
                if block["over"]:
                    problems.append(
                        f"{block['kind']} wider than its box at {width}px "
                        f"({block['longest']} characters, the box holds "
                        f"{block['holds']}) {block['where']}: {block['line']!r}"
                    )
        if width <= PHONE_WIDTH and layout["page"] > layout["window"]:
            problems.append(
                f"the page scrolls sideways at {width}px ({layout['page']}px of "
                f"content in a {layout['window']}px window), sticking out: "
                + ("; ".join(layout["culprits"]) or "?")
            )
    return problems


def check_images(driver, modes=("light", "dark")):
    """Problems of the current page's figures in each colour mode of the theme."""
    problems = []
    try:
        for mode in modes:
            for image in driver.execute_async_script(IMAGES_JS, mode):
                share, light = image["transparent"], image["light"]
                if share is None:
                    problems.append(f"figure pixels unreadable: {image['src']}")
                elif share > MAX_TRANSPARENT_SHARE and light < MIN_BACKGROUND_LUMINANCE:
                    problems.append(
                        f"figure illegible in {mode} mode: {share:.0%} of its pixels "
                        f"are transparent over rgb{tuple(image['background'])}: "
                        f"{image['src']}"
                    )
    finally:
        driver.execute_script("document.documentElement.dataset.theme = 'light';")
    return problems


def page_screenshots(driver, shots, name):
    """PNGs of page ``name`` at every LAYOUT_WIDTHS, and dark at the laptop width."""
    stem = name.replace("/", "_")
    paths = []
    for width in LAYOUT_WIDTHS:
        paths.append(shots / f"{stem}_{width}.png")
        screenshot(driver, paths[-1], width)
    driver.execute_script("document.documentElement.dataset.theme = 'dark';")
    try:
        paths.append(shots / f"{stem}_{LAPTOP_WIDTH}_dark.png")
        screenshot(driver, paths[-1], LAPTOP_WIDTH)
    finally:
        driver.execute_script("document.documentElement.dataset.theme = 'light';")
    return paths


def check_page(driver, base, name, toc_paths, shots=None, layouts=None):
    """Return the problems a reader would meet on page ``name`` (a toc entry).

    The page's layout at LAYOUT_WIDTHS goes into the dict ``layouts`` if given.
    """
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
    layout = measure_layout(driver, LAYOUT_WIDTHS)
    problems += layout_problems(layout)
    if layouts is not None:
        layouts[name] = layout
    problems += check_images(driver)
    if shots is not None:
        screenshot(driver, shots / f"{name.replace('/', '_')}.png")
        if name in SCREENSHOT_PAGES:
            for path in page_screenshots(driver, shots, name):
                print(f"     screenshot: {path}")
    return problems, math["math"]


def layout_table(layouts):
    """A Markdown table of {page: measure_layout(...)}: one row per width."""
    widths = sorted({w for layout in layouts.values() for w in layout}, reverse=True)
    lines = [
        "| window width | code blocks wider than their box | listings | outputs "
        "| output lines longer than their box | tables scrolling in their box "
        "| pages wider than the window |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for width in widths:
        measured = [layout[width] for layout in layouts.values() if width in layout]
        blocks = [block for layout in measured for block in layout["blocks"]]

        def share(kind=None):
            chosen = [b for b in blocks if kind in (None, b["kind"])]
            return f"{sum(b['over'] for b in chosen)} of {len(chosen)}"

        wrapped = sum(b["longer"] for b in blocks if b["kind"] == "output")
        tables = [table for layout in measured for table in layout["tables"]]
        wide = sum(layout["page"] > layout["window"] for layout in measured)
        lines.append(
            f"| {width} px | {share()} | {share('listing')} | {share('output')} "
            f"| {wrapped} | {sum(t['over'] for t in tables)} of {len(tables)} "
            f"| {wide} of {len(measured)} |"
        )
    return lines


def wrapped_outputs(layouts, width=LAPTOP_WIDTH):
    """Where outputs have lines longer than their box at ``width``: they wrap
    (allowed), but numbers are better rounded and tables better narrower."""
    return [
        f"{name}{block['where']}: {block['longer']} line(s) of up to "
        f"{block['longest']} characters in a box of {block['holds']}: "
        f"{block['line']!r}"
        for name, layout in layouts.items()
        for block in layout.get(width, {"blocks": []})["blocks"]
        if block["kind"] == "output" and block["longer"]
    ]


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


def png(width, height, pixel):
    """The bytes of an RGBA PNG whose pixel (x, y) is ``pixel(x, y)``, 4 bytes."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\0" + b"".join(pixel(x, y) for x in range(width)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def figure_html(page, name):
    """A figure showing _images/``name`` from ``page``, on no background of its own
    (the theme's white behind images in dark mode is removed)."""
    src = "../" * page.count("/") + f"_images/{name}"
    return (
        f'<figure><img src="{src}" alt="{name}" '
        'style="background-color: transparent; padding: 0"></figure>'
    )


def break_a_copy(html_root, broken, unrendered, tmp):
    """Copy the build. Page ``broken`` gets a missing image, a script error, math
    with MathJax, a listing wider than a laptop's column, a box wider than a phone
    and a figure with a transparent background; page ``unrendered`` gets math and
    loses MathJax, and gets an opaque figure (which passes)."""
    copy = Path(tmp) / "html"
    shutil.copytree(html_root, copy)
    images = copy / "_images"
    images.mkdir(exist_ok=True)
    for name, paper in (("transparent", b"\0\0\0\0"), ("opaque", b"\xff" * 4)):
        cross = png(  # a black cross on transparent or on white paper
            40, 40, lambda x, y: b"\0\0\0\xff" if x in (y, 39 - y) else paper
        )
        (images / f"deliberately-{name}.png").write_bytes(cross)
    page = copy / f"{broken}.html"
    extra = (
        '<img src="_images/deliberately-missing.png" alt="missing">'
        "<script>throw new Error('deliberate script error')</script>" + MATH_HTML
    )
    wide = (
        '<div class="highlight-default notranslate"><div class="highlight"><pre>'
        f"deliberately_long = {'1' * 100}</pre></div></div>"
        '<div style="width: 600px">a box deliberately wider than a phone</div>'
        + figure_html(broken, "deliberately-transparent.png")
    )
    mathjax = f'<script defer src="{MATHJAX_CDN}es5/tex-mml-chtml.js"></script>'
    text = page.read_text().replace("</main>", extra + "</main>", 1)
    text = text.replace("</article>", wide + "</article>", 1)
    if MATHJAX_CDN not in text:  # MathJax loaded twice never starts
        text = text.replace("</head>", mathjax + "</head>", 1)
    page.write_text(text)
    page = copy / f"{unrendered}.html"
    text = page.read_text().replace("</main>", MATH_HTML + "</main>", 1)
    text = text.replace(
        "</article>", figure_html(unrendered, "deliberately-opaque.png") + "</article>"
    )
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
        "math renders offline": n_math >= 1 and not seen("math not rendered", problems),
        "math without MathJax is reported": seen("math not rendered", missed),
        f"a listing wider than its box at {LAPTOP_WIDTH}px is reported": seen(
            f"listing wider than its box at {LAPTOP_WIDTH}px", problems
        ),
        f"a page wider than a {PHONE_WIDTH}px phone is reported": seen(
            f"the page scrolls sideways at {PHONE_WIDTH}px", problems
        ),
        "a transparent figure is reported in dark mode only": seen(
            "figure illegible in dark mode", problems
        )
        and not seen("figure illegible in light mode", problems),
        "an opaque figure passes": not seen("deliberately-opaque", missed),
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
    failures, layouts = 0, {}
    with tempfile.TemporaryDirectory() as tmp:
        driver = start_browser(Path(tmp) / "profile")
        server, base = serve(html_root)
        try:
            if not args.no_self_check:
                trusted = self_check(driver, html_root, names, toc_paths, tmp)
                failures += not trusted
            for name in names:
                problems, n_math = check_page(
                    driver, base, name, toc_paths, shots, layouts
                )
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
    if layouts:
        print("layout of every page:", *layout_table(layouts), sep="\n")
        wrapped = wrapped_outputs(layouts)
        if wrapped:
            print(f"outputs that wrap at {LAPTOP_WIDTH}px:", *wrapped, sep="\n  ")
    print(f"screenshots: {shots}/")
    if failures:
        print(f"{failures} problem(s) seen in the browser")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
