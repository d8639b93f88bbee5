#!/usr/bin/env bash
# Make Fashion-MNIST available, offline first: already present (checked), else
# Debian's dataset-fashion-mnist where apt is available, else a Keras download.
# Usage: scripts/ensure-data.sh PYTHON
set -euo pipefail
py=${1:?usage: scripts/ensure-data.sh PYTHON}

if "$py" -m fitbook.data --no-download 2>/dev/null; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  echo "Installing Debian's dataset-fashion-mnist ..."
  if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist; }; then
    echo "warning: apt-get could not install dataset-fashion-mnist; trying Keras." >&2
  fi
fi
"$py" -m fitbook.data
