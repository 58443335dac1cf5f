# Sourced by scripts/serve and scripts/test: make a venv and install the locked dependencies
# and the project (editable) into it, once per version of the lock. Needs only Python >= 3.11.
#   source scripts/_venv.sh [VENV] [LOCK]   defaults: .venv requirements/runtime.txt
# $PYTHON picks the interpreter for a new venv (python3 by default).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${1:-.venv}"
lock="${2:-requirements/runtime.txt}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
  "$PYTHON" -m venv "$venv"
fi
stamp="$venv/.authapi-$(cat "$lock" pyproject.toml | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  pip=("$venv/bin/python" -m pip --quiet --disable-pip-version-check)
  # Exactly the locked versions, each checked against its hash; then the project itself.
  "${pip[@]}" install --require-hashes --no-deps -r "$lock"
  "${pip[@]}" install --no-deps -e .
  "$venv/bin/python" -m pip check
  rm -f "$venv"/.authapi-*
  touch "$stamp"
fi
