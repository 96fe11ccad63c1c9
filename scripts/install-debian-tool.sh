#!/usr/bin/env bash
# Usage: scripts/install-debian-tool.sh COMMAND PACKAGE
# Install PACKAGE from Debian's archive when COMMAND is not on PATH (idempotent: a no-op when it
# is), for a tool some tests call. Locally those tests skip without it; CI (.ci/run) installs it
# through the wrappers (install-promtool.sh, install-chromium.sh) and requires it.
# Prints the command's path as its last line.
set -euo pipefail

command_name=${1:?usage: install-debian-tool.sh COMMAND PACKAGE}
package=${2:?usage: install-debian-tool.sh COMMAND PACKAGE}

if ! command -v "$command_name" >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$command_name is missing and this is not a Debian/Ubuntu system: install $package by hand" >&2
        exit 1
    fi
    start=$(date +%s)
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
    echo "installed $command_name (Debian package $package) in $(( $(date +%s) - start ))s" >&2
fi
command -v "$command_name"
