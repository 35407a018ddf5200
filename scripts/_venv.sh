# Sourced by the scripts: make .venv (once) and install dbguard into it with the extras given.
# Everything the project needs is installed here, so a fresh clone works on a machine that has
# nothing but Python 3.10+.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DBGUARD_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi
ensure_installed() {
    local extras="$1"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[$extras]" 2>&1 \
        | grep -v -e '^WARNING: Location' -e '^\s*$' >&2 || true
    "$VENV/bin/python" -c "import dbguard" 2>/dev/null || { echo "dbguard failed to install into $VENV" >&2; exit 2; }
}
