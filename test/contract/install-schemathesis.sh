#!/bin/bash
# Installs Schemathesis, pinned, from PyPI into a venv outside the repository (CI calls it; it does
# nothing when that version is already there). Prints the venv's bin folder. With --installed it
# only looks: the bin folder when that version is there, else exit 1 (the contract test asks so).
# Needs Python 3.9 or later with venv (Debian: python3-venv).
set -euo pipefail
VERSION=4.32.5
VENV=${NODEPREP_SCHEMATHESIS_VENV:-$HOME/.cache/nodeprep-schemathesis/$VERSION}
have() { [ "$("$VENV/bin/schemathesis" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' || true)" = "$VERSION" ]; }
if [ "${1:-}" = --installed ]; then
  have || { echo "Schemathesis $VERSION is not in $VENV" >&2; exit 1; }
elif ! have; then
  python=
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import venv, ensurepip' 2>/dev/null; then python=$candidate; break; fi
  done
  [ -n "$python" ] || { echo "install-schemathesis: python3 with venv is required (Debian: apt-get install python3-venv)" >&2; exit 1; }
  rm -rf "$VENV"
  "$python" -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
fi
echo "$VENV/bin"
