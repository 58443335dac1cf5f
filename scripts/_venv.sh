# Sourced by scripts/serve and scripts/test: make .venv and install the project into it,
# once per version of pyproject.toml. Needs only Python >= 3.11 on the PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
extras="${1:-}"
spec="."
[ -z "$extras" ] || spec=".[$extras]"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.authapi-$extras-$(cksum < pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
  rm -f .venv/.authapi-"$extras"-*
  touch "$stamp"
fi
