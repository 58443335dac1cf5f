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
stamp_of() { echo "$venv/.authapi-$(basename "$1")-$(cat "$1" pyproject.toml | cksum | cut -d' ' -f1)"; }
stamp="$(stamp_of "$lock")"
# The full lock is a superset of the runtime one: a venv made for the tests serves too.
if [ ! -f "$stamp" ] && [ "$lock" = requirements/runtime.txt ] \
    && [ -f "$(stamp_of requirements/lock.txt)" ]; then
  stamp="$(stamp_of requirements/lock.txt)"
fi
if [ ! -f "$stamp" ]; then
  pip=("$venv/bin/python" -m pip --quiet --disable-pip-version-check)
  # Exactly the locked versions, each checked against its hash; then the project itself.
  "${pip[@]}" install --require-hashes --no-deps -r "$lock"
  "${pip[@]}" install --no-deps -e .
  "$venv/bin/python" -m pip check
  rm -f "$venv/.authapi-$(basename "$lock")"-*
  touch "$stamp"
fi
