#!/usr/bin/env bash
# Fetch the official SARIF 2.1.0 JSON schema (OASIS, final "rtm.5" text, the one GitHub code
# scanning validates against) for tests/test_sarif.py, from the npm registry: Microsoft's
# @microsoft/jest-sarif package (MIT) ships it as lib/schemas/sarif-2.1.0-rtm.5.json. Only the
# schema is kept; its SHA-256 is checked, so a changed package cannot change what "valid" means.
#
# Usage: scripts/install-sarif-schema.sh [DEST]   (default: .cache/sarif-2.1.0-rtm.5.json)
# Idempotent: an existing file with the right digest is kept. Needs npm (Debian's `npm`).
set -euo pipefail

PACKAGE="@microsoft/jest-sarif@1.0.0-beta.0"   # pinned: the digest below is of its schema file
SHA256="2d99159ae54a3eea97f81781cff48780548657c35949f4b7f25e99a2ba4de4f8"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$repo_root/.cache/sarif-2.1.0-rtm.5.json}"

if [ -f "$dest" ] && echo "$SHA256  $dest" | sha256sum --check --status; then
    echo "$dest"
    exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "install-sarif-schema: npm is needed (apt-get install npm)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null && tar xzf ./*.tgz package/lib/schemas/sarif-2.1.0-rtm.5.json)
echo "$SHA256  $work/package/lib/schemas/sarif-2.1.0-rtm.5.json" | sha256sum --check --status \
    || { echo "install-sarif-schema: the schema in $PACKAGE does not have the expected digest" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
cp "$work/package/lib/schemas/sarif-2.1.0-rtm.5.json" "$dest"
echo "$dest"
