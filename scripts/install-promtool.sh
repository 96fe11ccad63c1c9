#!/usr/bin/env bash
# Install promtool (Debian's `prometheus` package) for tests/test_deployment_files.py, which runs
# `promtool check config deploy/prometheus/prometheus.yml`; CI sets FLOWSCOPE_REQUIRE_PROMTOOL=1.
# (The package also brings a prometheus service; in a container without systemd nothing starts.)
exec "$(dirname "$0")/install-debian-tool.sh" promtool prometheus
