"""Execute every chapter of the book into its jupyter-cache (``make book``).

``make book`` runs this first, then ``jupyter-book build`` in cache mode, which
finds every chapter's outputs here and renders them without executing again.
Every chapter is executed at every build all the same: the cache is emptied
first. What this adds is the order, and two chapters at a time where that is
harmless:

- Chapters that measure speed (``TIMED``: they time runs, autotune, or report
  how long something took) run one at a time, first, on an otherwise idle
  machine. The GAN chapter's autotuning fills the tuning cache there, so no
  later chapter tunes while another runs.
- The other chapters run two at a time. Each starts its own kernel, imports
  TensorFlow and mostly trains small models, which leaves a core idle much of
  the time; their results do not depend on speed.

A chapter that fails is reported here and not cached: jupyter-book executes it
again and fails the build with its error (``-W --keep-going``), as it would
without this script. ``tests/test_execute_book.py`` checks that every chapter
that uses a timing function is in ``TIMED``.

Run: python scripts/execute_book.py BOOK_ROOT [--jobs 2]
"""

import argparse
import concurrent.futures
import sys
import time
from pathlib import Path

import yaml

TIMED = (  # chapter stems, in the order they run (the GAN's tuning first)
    "gan", "wgan_gp", "performance", "fit_internals", "loops", "distribute", "vae",
)
TIMEOUT = 900  # seconds per cell, as `execute: timeout` in _config.yml


def chapters(root):
    """The book's pages in table-of-contents order: paths of ``.md`` files."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    names = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                names.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({key: value for key, value in toc.items() if key != "root"})
    return [root / f"{name}.md" for name in dict.fromkeys(names)]


def read(path):
    """The notebook myst-nb reads from ``path`` (``None``: not a notebook)."""
    from myst_nb.core.read import (
        is_myst_markdown_notebook,
        read_myst_markdown_notebook,
    )

    text = path.read_text()
    if not is_myst_markdown_notebook(text):
        return None
    return read_myst_markdown_notebook(text, add_source_map=True, path=path)


def execute(path):
    """Execute the chapter at ``path`` in its own directory; returns
    ``(path, notebook, seconds, error text or None)``."""
    from jupyter_cache.executors.utils import single_nb_execution

    notebook = read(path)
    result = single_nb_execution(notebook, cwd=str(path.parent), timeout=TIMEOUT,
                                 allow_errors=False, meta_override=True)
    return path, result.nb, result.time, result.exc_string


def order(paths):
    """``(alone, together)``: the timed chapters in ``TIMED``'s order, then the
    others in the order given."""
    by_stem = {path.stem: path for path in paths}
    alone = [by_stem[stem] for stem in TIMED if stem in by_stem]
    together = [path for path in paths if path not in alone]
    return alone, together


def main():
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("root", type=Path, help="the book's root (with _toc.yml)")
    options.add_argument("--jobs", type=int, default=2,
                         help="chapters run at once, outside TIMED (default 2)")
    args = options.parse_args()
    if args.jobs < 1:
        options.error(f"--jobs must be at least 1, got {args.jobs}.")

    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    root = args.root.resolve()
    notebooks = [path for path in chapters(root) if path.is_file() and read(path)]
    cache = get_cache(str(root / "_build" / ".jupyter_cache"))
    cache.clear_cache()  # every chapter runs at every build
    failed = []

    def done(path, notebook, seconds, error):
        name = path.relative_to(root)
        if error is not None:
            failed.append(name)
            print(f"{name}: FAILED after {seconds:.1f} s; jupyter-book will run it "
                  f"again and report:\n{error[-2000:]}", flush=True)
            return
        cache.cache_notebook_bundle(
            CacheBundleIn(notebook, str(path), data={"execution_seconds": seconds}),
            check_validity=False, overwrite=True)
        print(f"{name}: executed in {seconds:.1f} s", flush=True)

    start = time.perf_counter()
    alone, together = order(notebooks)
    for path in alone:
        done(*execute(path))
    with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
        for future in concurrent.futures.as_completed(
                [pool.submit(execute, path) for path in together]):
            done(*future.result())
    print(f"{len(notebooks)} chapters executed in {time.perf_counter() - start:.0f} s "
          f"({len(alone)} alone, the others {args.jobs} at a time)"
          + (f"; failed: {', '.join(map(str, failed))}" if failed else ""),
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
