"""Check the built book: every page in _toc.yml exists, no page shows an error,
traceback or stderr output, every image a page references exists and has alt
text that describes it (not empty, not a file name or path), and every figure
has a caption.

Usage: python .ci/check_html.py _build/html
"""

import re
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
BAD_OUTPUT_CLASSES = ("traceback", "stderr", "error")  # myst-nb output classes
BAD_TEXT = ("Traceback (most recent call last)",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".pdf")


def alt_problem(img):
    """Why an <img>'s alt text does not describe it, or None when it does.

    Docutils falls back to the image's path when a figure gives no alt text, and
    myst-nb names an output image by its hash, so a path, a file name or a bare
    hash is a missing description.
    """
    alt = (img.get("alt") or "").strip()
    src = img.get("src", "")
    if not alt:
        return "has no alt text"
    one_word = not re.search(r"\s", alt)
    looks_like_file = (
        alt == src
        or alt == PurePosixPath(urlparse(src).path).name
        or alt.lower().endswith(IMAGE_SUFFIXES)
        or (one_word and re.search(r"[/\\.]", alt))
        or re.fullmatch(r"[0-9a-f]{16,}", alt.lower())
    )
    if looks_like_file:
        return f"has a file name for alt text ({alt!r}): describe what it shows"
    return None


def toc_files(node):
    """Every file listed in a _toc.yml node, without suffix."""
    found = [node[key] for key in ("root", "file") if key in node]
    for key in ("parts", "chapters", "sections"):
        for child in node.get(key, []):
            found += toc_files(child)
    return found


def check_page(html_path, html_root):
    """Return a list of problems found on one built page."""
    problems = []
    soup = BeautifulSoup(html_path.read_text(), "html.parser")
    for output in soup.select("div.output"):
        bad = set(output.get("class", [])) & set(BAD_OUTPUT_CLASSES)
        if bad:
            snippet = output.get_text()[:200].strip()
            problems.append(f"{'/'.join(sorted(bad))} output: {snippet!r}")
    main = soup.select_one("main") or soup
    for text in BAD_TEXT:
        if text in main.get_text():
            problems.append(f"page text contains {text!r}")
    for img in soup.find_all("img"):
        src = img.get("src", "")
        problem = alt_problem(img)
        if problem:
            problems.append(f"image {src} {problem}")
        parsed = urlparse(src)
        if parsed.scheme in ("http", "https", "data") or not src:
            continue
        target = (html_path.parent / unquote(parsed.path)).resolve()
        if html_root.resolve() not in target.parents or not target.is_file():
            problems.append(f"image {src} does not exist")
    for figure in soup.find_all("figure"):
        caption = figure.find("figcaption")
        if caption is None or not caption.get_text(strip=True):
            shown = figure.find("img")
            what = shown.get("src", "?") if shown else figure.get("id", "?")
            problems.append(f"figure {what} has no caption")
    return problems


def main(html_root):
    html_root = Path(html_root)
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    failures = 0
    for name in toc_files(toc):
        page = html_root / f"{name}.html"
        built = page.is_file()
        problems = check_page(page, html_root) if built else ["page was not built"]
        for problem in problems:
            print(f"FAIL {name}: {problem}")
        failures += len(problems)
        if not problems:
            print(f"ok   {name}")
    if failures:
        print(f"{failures} problem(s) in the built book")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ROOT / "_build" / "html"))
