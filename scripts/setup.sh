# Sourced by scripts/demo and scripts/test: a .venv with the project (editable) and its `dev`
# dependency group installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# pip 25.1 is the first to install PEP 735 dependency groups (--group)
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade 'pip>=25.1' >/dev/null
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e . --group dev
export PATH="$PWD/.venv/bin:$PATH"
