#!/usr/bin/env bash
# Install promtool (Debian's `prometheus` package) for tests/test_deployment_files.py, which runs
# `promtool check config deploy/prometheus/prometheus.yml`. Locally the test skips without it;
# CI (.ci/run) calls this script and sets FLOWSCOPE_REQUIRE_PROMTOOL=1, so there a missing promtool fails.
# Idempotent: a no-op when promtool is already on PATH. Prints promtool's path as its last line.
# (The package also brings a prometheus service; in a container without systemd nothing starts.)
set -euo pipefail

if ! command -v promtool >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "promtool is missing and this is not a Debian/Ubuntu system: install Prometheus' promtool by hand" >&2
        exit 1
    fi
    start=$(date +%s)
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    echo "installed promtool (Debian package prometheus) in $(( $(date +%s) - start ))s" >&2
fi
promtool --version 2>&1 | head -n1 >&2
command -v promtool
