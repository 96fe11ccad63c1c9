#!/usr/bin/env bash
# Install Arize Phoenix, a real OTLP receiver (gRPC + HTTP) with a REST API to read spans back,
# into its OWN virtual environment. The test suite starts it as a subprocess
# (tests/support/phoenix.py); flowscope's venv never imports it.
#
# Why a separate venv: Phoenix pulls in ~150 packages (FastAPI, Strawberry, pandas, pyarrow,
# scikit-learn, grpcio, opentelemetry-*, protobuf, ...). Installed beside flowscope they would
# fix versions flowscope is tested with (20.26.1 takes SQLAlchemy 2.1, the suite pins 2.0.x);
# kept apart, neither side constrains the other. Install time here: ~60 s with a warm pip cache,
# ~75 s cold; ~850 MB on disk.
#
# Usage: scripts/install-phoenix.sh [VENV_DIR]      (default: .venv-phoenix in the repo root)
#        PYTHON=python3.12 scripts/install-phoenix.sh
# Idempotent: a marker file in the venv records the installed version; a re-run with the same
# pin is a no-op (well under a second). Prints the venv's python path as its last line.
set -euo pipefail

# PINNED on purpose: the tests depend on this version's REST API shape
# (GET /v1/projects/{project}/spans: field names, cursor pagination, attribute nesting) and on its
# start-up interface (`phoenix serve` + PHOENIX_HOST/PHOENIX_PORT/PHOENIX_GRPC_PORT/
# PHOENIX_WORKING_DIR/PHOENIX_SQL_DATABASE_URL and the telemetry opt-outs). Phoenix releases often
# and has changed these before; bump deliberately, then run tests/support/check_phoenix.py.
PHOENIX_VERSION="20.26.1"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo_root/.venv-phoenix}"
python="${PYTHON:-python3}"
marker="$venv/.phoenix-installed"

wanted="arize-phoenix==$PHOENIX_VERSION"
if [[ -x "$venv/bin/python" && -f "$marker" && "$(cat "$marker")" == "$wanted" ]]; then
    echo "$wanted already installed in $venv" >&2
    echo "$venv/bin/python"
    exit 0
fi

start=$(date +%s)
rm -f "$marker"
if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
pip_install() {
    # This machine's pip config names optional local indexes that may not exist; pip warns
    # once per package about them. Drop that noise only.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
pip_install --upgrade pip
pip_install "$wanted"
# Fail here, not at test time, if the install is broken. (Importing Phoenix creates its
# working directory, ~/.phoenix unless PHOENIX_WORKING_DIR says otherwise: use a throw-away one.)
check_dir="$(mktemp -d)"
PHOENIX_WORKING_DIR="$check_dir" "$venv/bin/python" -I -c "import phoenix.server.main"
rm -rf "$check_dir"
echo "$wanted" > "$marker"
echo "installed $wanted into $venv in $(( $(date +%s) - start ))s" >&2
echo "$venv/bin/python"
