#!/usr/bin/env bash
# fitbook installed, not checked out: build the wheel, check that it ships every
# committed artifact, install it into a temporary folder outside the checkout
# (without dependencies: TensorFlow and Keras come from .venv), and from there load
# the committed generator and score a few of its images with the packaged
# classifier. Any failure exits non-zero. Needs `make setup` (the .venv and data).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd -P)
PY=${PY:-$REPO/.venv/bin/python}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
TMP=$(cd "$TMP" && pwd -P)
case "$TMP/" in "$REPO"/*) echo "error: temporary folder $TMP is in the checkout" >&2
  exit 1 ;; esac
SECONDS=0

# Build from a copy of the files git knows (tracked, and new ones not ignored):
# the build writes build/ and *.egg-info, and must not pick up stray files.
mkdir "$TMP/src"
git ls-files -z -c -o --exclude-standard \
  | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$TMP/src"
"$PY" -m pip wheel --quiet --no-deps -w "$TMP/dist" "$TMP/src"
WHEEL=$(echo "$TMP"/dist/fitbook-*.whl)
test -f "$WHEEL"
echo "built $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB) at ${SECONDS}s"

# Every committed artifact ships, and nothing else under fitbook/artifacts/.
git ls-files src/fitbook/artifacts | sed 's|^src/||' | sort >"$TMP/committed"
"$PY" -m zipfile -l "$WHEEL" | awk '{print $1}' | grep '^fitbook/artifacts/.' \
  | sort >"$TMP/shipped" || true
test -s "$TMP/committed" || { echo "error: no committed artifacts found" >&2; exit 1; }
if ! diff -u "$TMP/committed" "$TMP/shipped"; then
  echo "error: the wheel's fitbook/artifacts/ differs from the committed files" \
    "(- committed, + shipped); fix [tool.setuptools.package-data]" >&2
  exit 1
fi
echo "the wheel ships all $(wc -l <"$TMP/committed") committed artifacts"

"$PY" -m pip install --quiet --no-deps --target "$TMP/site" "$WHEEL"
echo "installed into $TMP/site at ${SECONDS}s"

# Run from outside the checkout; PYTHONPATH puts the installed copy ahead of the
# editable install of this checkout, and the script checks that it did.
cd "$TMP"
PYTHONPATH="$TMP/site" "$PY" -s - "$TMP/site" "$REPO" <<'PYTHON'
import sys
from pathlib import Path

site, repo = (Path(arg).resolve() for arg in sys.argv[1:3])
import fitbook  # noqa: F401  (quiet TensorFlow import)
import keras
import numpy as np

from fitbook import models as M
from fitbook import quality as Q
from fitbook.data import load_fashion_mnist

for name, path in [("fitbook", fitbook.__file__), ("ARTIFACTS", Q.ARTIFACTS)]:
    path = Path(path).resolve()
    assert path.is_relative_to(site) and not path.is_relative_to(repo), (
        f"{name} is {path}, not the installed copy under {site}"
    )
print("fitbook imported from", Path(fitbook.__file__).parent)

generator, provenance = Q.load_committed_generator()
classifier = Q.load_classifier()
_, (x_test, _) = load_fashion_mnist()
reference = Q.reference_stats(classifier, x_test[:1000])
keras.utils.set_random_seed(0)
z = keras.random.normal((200, M.LATENT_DIM), seed=0)
scores = {
    f"committed generator ({provenance['steps']} steps)": Q.quality_scores(
        classifier, Q.generate(generator, z), reference
    ),
    "untrained generator": Q.quality_scores(
        classifier, Q.generate(M.build_generator(), z), reference
    ),
}
for name, s in scores.items():
    print(f"{name:<36}" + "  ".join(f"{k} {v:.3f}" for k, v in s.items()))
trained, untrained = scores.values()
assert all(np.isfinite(v) for s in scores.values() for v in s.values()), scores
assert trained["frechet"] < untrained["frechet"], scores
PYTHON
echo "check_wheel passed in ${SECONDS}s"
