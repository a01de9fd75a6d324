#!/usr/bin/env bash
# Install matrix-synapse into its own virtualenv (idempotent).
#
#   SYNAPSE_VENV   where to install (default: <repo>/.synapse-venv)
#   PYTHON         interpreter used to create the venv (default: python3.11, else python3)
#
# Does nothing when "$SYNAPSE_VENV/bin/python -m synapse.app.homeserver --help"
# already works. Prints the venv path on success.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SYNAPSE_VENV:-$repo_root/.synapse-venv}"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import synapse.app.homeserver" >/dev/null 2>&1; then
    echo "$venv"
    exit 0
fi

# Concurrent callers (parallel test runs) wait for one installer.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import synapse.app.homeserver" >/dev/null 2>&1; then
    echo "$venv"
    exit 0
fi

echo "installing matrix-synapse into $venv" >&2
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip >&2
"$venv/bin/python" -m pip install --quiet matrix-synapse >&2
"$venv/bin/python" -c "import synapse.app.homeserver" >&2
echo "$venv"
