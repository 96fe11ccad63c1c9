#!/usr/bin/env bash
# Install a headless browser (Debian's `chromium` package) for tests/test_html_report.py, which
# renders the HTML report in it; CI sets FLOWSCOPE_REQUIRE_CHROMIUM=1.
exec "$(dirname "$0")/install-debian-tool.sh" chromium chromium
