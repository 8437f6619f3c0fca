#!/bin/bash
# Installs Schemathesis, pinned, from PyPI into a venv outside the repository (CI and the contract
# test call it; it does nothing when that version is already there). Prints the venv's bin folder.
# Needs Python 3.9 or later with venv (Debian: python3-venv).
set -euo pipefail
VERSION=4.32.5
VENV=${NODEPREP_SCHEMATHESIS_VENV:-$HOME/.cache/nodeprep-schemathesis/$VERSION}
if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' || true)" != "$VERSION" ]; then
  python=$(command -v python3.11 || command -v python3) || { echo "install-schemathesis: python3 is required" >&2; exit 1; }
  rm -rf "$VENV"
  "$python" -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
fi
echo "$VENV/bin"
