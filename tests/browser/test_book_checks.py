"""The checks of the built book (.ci/linkcheck.py, .ci/browser_check.py) catch what
they claim to, tested on tiny synthetic sites; no browser is needed here."""

import http.server
import importlib.util
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

CI = Path(__file__).resolve().parents[2] / ".ci"
sys.path.insert(0, str(CI))  # the scripts import each other, as when run from .ci/


def load(name):
    """Import a script of .ci/ as a module."""
    spec = importlib.util.spec_from_file_location(name, CI / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


linkcheck = load("linkcheck")
browser_check = load("browser_check")


def write(path, body):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><head></head><body><main>{body}</main></body></html>")


@pytest.fixture
def site(tmp_path):
    """A two-page book whose links all resolve."""
    root = tmp_path / "html"
    write(root / "index.html", '<a href="book/a.html">a</a>')
    write(
        root / "book" / "a.html",
        '<h1 id="top">A</h1><a href="b.html#sec">b</a><a href="#top">up</a>'
        '<img src="../_images/fig.png"><a href="https://example.org/x">out</a>'
        '<a href="mailto:someone@example.org">mail</a>',
    )
    write(root / "book" / "b.html", '<h2 id="sec">S</h2><a href="../index.html">i</a>')
    (root / "_images").mkdir()
    (root / "_images" / "fig.png").write_bytes(b"png")
    return root


def test_clean_site_passes_and_external_links_are_listed(site):
    problems, external = linkcheck.check_internal(site)
    assert problems == []
    assert external == ["https://example.org/x"]
    assert linkcheck.main([str(site)]) == 0


def test_broken_page_anchor_image_and_escape_are_reported(site):
    write(
        site / "book" / "b.html",
        '<h2 id="sec">S</h2><a href="missing.html">1</a><a href="a.html#nope">2</a>'
        '<img src="../_images/gone.png"><a href="../../outside.html">3</a>',
    )
    problems, _ = linkcheck.check_internal(site)
    assert len(problems) == 4, problems
    assert any("missing.html does not exist" in p for p in problems)
    assert any("a.html#nope: no such anchor" in p for p in problems)
    assert any("gone.png does not exist" in p for p in problems)
    assert any("points outside the build" in p for p in problems)
    assert linkcheck.main([str(site), "--no-self-check"]) == 1


def test_self_check_trusts_a_working_checker(site):
    assert linkcheck.self_check(site)


def test_missing_build_is_a_clear_failure(tmp_path, capsys):
    assert linkcheck.main([str(tmp_path)]) == 1
    assert "no built book" in capsys.readouterr().out


@pytest.fixture
def local_server(site):
    """Serve ``site`` on 127.0.0.1; yield its base URL."""
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(site)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_external_check_reports_a_dead_link(local_server):
    problems = linkcheck.check_external(
        [local_server + "index.html", local_server + "nowhere.html"]
    )
    assert len(problems) == 1 and "nowhere.html" in problems[0] and "404" in problems[0]


def test_toc_files_walks_parts_chapters_and_sections():
    toc = {
        "root": "intro",
        "parts": [{"chapters": [{"file": "a", "sections": [{"file": "a1"}]}]}],
    }
    assert browser_check.toc_files(toc) == ["intro", "a", "a1"]


def test_server_points_mathjax_at_the_local_copy(site):
    cdn = browser_check.MATHJAX_CDN + "es5/tex-mml-chtml.js"
    write(site / "math.html", f'<script src="{cdn}"></script>')
    server, base = browser_check.serve(site)
    try:
        page = urllib.request.urlopen(base + "math.html").read().decode()
        local = browser_check.MATHJAX_LOCAL + "es5/tex-mml-chtml.js"
        assert cdn not in page and local in page
        script = urllib.request.urlopen(base + local.lstrip("/"))
        assert script.status == 200 and b"MathJax" in script.read()
    finally:
        server.shutdown()


def block(kind, over, longest=100, holds=89):
    """A code block as LAYOUT_JS reports it."""
    return {
        "kind": kind,
        "over": over,
        "holds": holds,
        "longest": longest,
        "longer": int(longest > holds),
        "where": "#s",
        "line": "x = 1",
    }


def layout(blocks=(), page=375, window=375, tables=()):
    """A page's layout at one width as LAYOUT_JS reports it."""
    return {
        "blocks": list(blocks),
        "tables": list(tables),
        "page": page,
        "window": window,
        "culprits": ["div.wide #s (600px)"],
    }


def test_layout_problems_are_wide_blocks_on_a_laptop_and_a_wide_page_on_a_phone():
    laptop, phone = browser_check.LAPTOP_WIDTH, browser_check.PHONE_WIDTH
    wide_blocks = [block("listing", True), block("output", True)]
    problems = browser_check.layout_problems(
        {
            # A page wider than a laptop's window is not this check's business.
            laptop: layout([*wide_blocks, block("listing", False)], page=1400),
            # On a phone, code may scroll inside its box; the page may not.
            phone: layout(wide_blocks, page=600),
        }
    )
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"listing wider than its box at {laptop}px")
    assert "100 characters, the box holds 89" in problems[0]
    assert problems[1].startswith(f"output wider than its box at {laptop}px")
    assert f"scrolls sideways at {phone}px" in problems[2]
    assert "div.wide" in problems[2]
    assert browser_check.layout_problems({phone: layout(wide_blocks)}) == []


def test_layout_table_counts_blocks_tables_and_wide_pages_per_width():
    layouts = {
        "a": {
            1280: layout(
                [block("listing", True), block("output", False)],
                tables=[{"over": True, "where": ""}],
            ),
            390: layout([block("listing", True)], page=500),
        },
        "b": {1280: layout([block("listing", False)]), 390: layout()},
    }
    lines = browser_check.layout_table(layouts)
    assert lines[2] == "| 1280 px | 1 of 3 | 1 of 2 | 0 of 1 | 1 | 1 of 1 | 0 of 2 |"
    assert lines[3] == "| 390 px | 1 of 1 | 1 of 1 | 0 of 0 | 0 | 0 of 0 | 1 of 2 |"


def test_self_check_pngs_have_the_pixels_asked_for(tmp_path):
    from PIL import Image

    def pixel(x, y):
        return b"\0\0\0\xff" if x == y else b"\xff\xff\xff\0"

    path = tmp_path / "cross.png"
    path.write_bytes(browser_check.png(3, 2, pixel))
    image = Image.open(path)
    assert image.mode == "RGBA" and image.size == (3, 2)
    assert image.getpixel((1, 1)) == (0, 0, 0, 255)
    assert image.getpixel((2, 1)) == (255, 255, 255, 0)


def test_wrapped_outputs_names_the_page_and_the_line():
    blocks = [block("output", False), block("listing", True)]
    layouts = {"book/a": {1280: layout(blocks)}}
    assert browser_check.wrapped_outputs(layouts) == [
        "book/a#s: 1 line(s) of up to 100 characters in a box of 89: 'x = 1'"
    ]


check_html = load("check_html")


@pytest.mark.parametrize(
    "img, problem",
    [
        ('<img src="../_images/ab12.png" alt="A grid of 32 garments">', None),
        ('<img src="x.png" alt="Recall of T-shirt/top and Shirt">', None),
        ('<img src="x.png">', "has no alt text"),
        ('<img src="x.png" alt="  ">', "has no alt text"),
        ('<img src="../_images/ab12.png" alt="../_images/ab12.png">', "file name"),
        ('<img src="../_images/ab12.png" alt="ab12.png">', "file name"),
        ('<img src="y.png" alt="figure.svg">', "file name"),
        ('<img src="y.png" alt="_images/other">', "file name"),
        ('<img src="y.png" alt="3f2a9c0d1e5b7a64">', "file name"),
    ],
)
def test_alt_text_must_describe_the_image(img, problem):
    from bs4 import BeautifulSoup

    found = check_html.alt_problem(BeautifulSoup(img, "html.parser").img)
    assert (found is None) if problem is None else (problem in found), found


def test_page_lists_each_image_without_alt_and_figure_without_caption(tmp_path):
    page = tmp_path / "book" / "a.html"
    write(
        page,
        '<figure><img src="../_images/f.png" alt="../_images/f.png"></figure>'
        '<figure><img src="../_images/g.png" alt="Loss curves of two runs">'
        "<figcaption><p>Losses.</p></figcaption></figure>",
    )
    (tmp_path / "_images").mkdir()
    for name in ("f.png", "g.png"):
        (tmp_path / "_images" / name).write_bytes(b"png")
    problems = check_html.check_page(page, tmp_path)
    assert problems == [
        "image ../_images/f.png has a file name for alt text ('../_images/f.png'): "
        "describe what it shows",
        "figure ../_images/f.png has no caption",
    ]
