#!/usr/bin/env bash
# Install redis-server (Debian's `redis-server` package) for tests/test_span_operations_celery.py,
# which starts a private server on 127.0.0.1 (a free port, no persistence) as the broker and
# result backend of a real Celery worker; CI sets FLOWSCOPE_REQUIRE_REDIS=1.
# (The package also brings a redis service; in a container without systemd nothing starts.)
exec "$(dirname "$0")/install-debian-tool.sh" redis-server redis-server
