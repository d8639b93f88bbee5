"""Measure how the built book fits windows of several widths, without judging it.

Opens every page of the table of contents in headless Chromium (the browser
check's setup, .ci/browser_check.py) and prints, per window width, the code blocks
wider than their box (listings and outputs), output lines longer than their box,
tables that scroll inside their box and pages wider than the window; then the
pages with the most blocks wider than their box and what sticks out of pages that
are too wide.
The browser check enforces its limits at 1280 and 390 px; this script is for
seeing the whole picture, e.g. before and after a change of the stylesheet.

Usage: python .ci/measure_width.py [_build/html] [--widths 1920,1280,390]
           [--toc _toc.yml] [--worst 3]
"""

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import yaml
from browser_check import (  # .ci/, this script's folder
    ROOT,
    layout_table,
    measure_layout,
    serve,
    start_browser,
    toc_files,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("html_root", nargs="?", default=ROOT / "_build" / "html")
    parser.add_argument("--widths", default="1920,1280,390")
    parser.add_argument("--toc", default=ROOT / "_toc.yml")
    parser.add_argument("--worst", type=int, default=3)
    args = parser.parse_args(argv)
    widths = [int(width) for width in args.widths.split(",")]
    names = toc_files(yaml.safe_load(Path(args.toc).read_text()))
    start, layouts = time.monotonic(), {}
    with tempfile.TemporaryDirectory() as tmp:
        driver = start_browser(Path(tmp) / "profile")
        server, base = serve(Path(args.html_root))
        try:
            for name in names:
                driver.get(base + quote(f"{name}.html"))
                layouts[name] = measure_layout(driver, widths)
        finally:
            server.shutdown()
            driver.quit()
    print(*layout_table(layouts), sep="\n")
    for width in widths:
        over = Counter(
            {
                name: sum(block["over"] for block in layout[width]["blocks"])
                for name, layout in layouts.items()
            }
        )
        worst = [f"{name} ({n})" for name, n in over.most_common(args.worst) if n]
        worst = ", ".join(worst) or "-"
        print(f"{width} px: most blocks wider than their box: {worst}")
        for name, layout in layouts.items():
            if layout[width]["page"] > layout[width]["window"]:
                print(
                    f"{width} px: {name} is {layout[width]['page']}px wide in a "
                    f"{layout[width]['window']}px window; sticking out: "
                    + "; ".join(layout[width]["culprits"])
                )
    seconds = time.monotonic() - start
    print(f"{len(names)} pages at {len(widths)} widths in {seconds:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
