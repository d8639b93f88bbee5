"""Tools: command-line programs that train or check what the book uses.

Run one as ``python -m fitbook.tools.NAME --help``. A tool may import any module
of fitbook; no chapter shows a tool's code (tests/test_layout.py checks both).
``python -m fitbook.gan``, ``python -m fitbook.quality`` and
``python -m fitbook.data`` still work: they call the tool's ``main``.
"""
