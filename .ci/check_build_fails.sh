#!/usr/bin/env bash
# Prove that `make book` exits non-zero when a chapter cell raises, and when a
# cell writes to stderr (a warning we would otherwise publish unnoticed).
set -euo pipefail
cd "$(dirname "$0")/.."

expect_failure() {  # $1: label, $2: code of the single cell, $3: text the log must show
  local tmp
  tmp=$(mktemp -d)
  cp _config.yml "$tmp/"
  mkdir -p "$tmp/book" && cp book/references.bib "$tmp/book/"  # named in _config.yml
  printf 'format: jb-book\nroot: broken\n' > "$tmp/_toc.yml"
  cat > "$tmp/broken.md" <<PAGE
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A deliberately broken chapter

\`\`\`{code-cell} ipython3
$2
\`\`\`
PAGE
  if make --no-print-directory book BOOK_ROOT="$tmp" > "$tmp/build.log" 2>&1; then
    echo "FAIL ($1): make book exited 0 on a broken chapter"; tail -20 "$tmp/build.log"
    exit 1
  fi
  if ! grep -q "$3" "$tmp/build.log"; then
    echo "FAIL ($1): make book failed, but the log does not show it was the cell:"
    tail -20 "$tmp/build.log"; exit 1
  fi
  echo "ok ($1): make book exited non-zero, log shows '$3'"
  rm -rf "$tmp"
}

expect_failure "failing cell" 'raise RuntimeError("deliberate failure")' "deliberate failure"
expect_failure "stderr output" \
  'import warnings; warnings.warn("deliberate warning")' "stderr was found in the cell outputs"
