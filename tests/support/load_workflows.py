"""Workflows for the load-test and benchmark specifications (importable by worker processes).

Worker processes (``mode="processes"``) import the workflow class and every callable they are
sent by name, so these live at module level in an importable module, not inside tests.
"""

from __future__ import annotations

import time
from typing import Any

from flowscope.workflows import Workflow, guard, on, step


class PingPong(Workflow):
    """Trivial and endless: ``hit`` is always available, so every planned operation is performed."""

    ping = step(hit="pong")
    pong = step(hit="ping")


class SlowPingPong(Workflow):
    """PingPong whose action sleeps 20 ms: long enough to interrupt a load test while it runs."""

    ping = step(hit="pong")
    pong = step(hit="ping")

    @on("hit")
    def wait(self, execution: Any, user: str | None, context: dict[str, Any]) -> None:
        time.sleep(0.02)


class Crunch(Workflow):
    """CPU-bound: each ``work`` computes for a few milliseconds while holding the GIL."""

    a = step(work="b")
    b = step(work="a")

    @on("work")
    def crunch(self, execution: Any, user: str | None, context: dict[str, Any]) -> None:
        execution.context_data["checksum"] = cpu_work(30_000)


def cpu_work(n: int) -> int:
    total = 0
    for i in range(n):
        total = (total + i * i) % 1_000_003
    return total


class FlakyError(RuntimeError):
    """Raised by Flaky for executions with an even id."""


class Flaky(Workflow):
    """``begin`` then ``finish``; ``finish`` fails for executions with an even id (half of them)."""

    opened = step(begin="working")
    working = step(finish="done")
    done = step()

    @on("finish")
    def fail_on_even_ids(self, execution: Any, user: str | None, context: dict[str, Any]) -> None:
        if execution.id % 2 == 0:
            raise FlakyError(f"execution {execution.id} refuses to finish")


class Gated(Workflow):
    """Its only initial action is guarded off for everyone: nothing is ever available."""

    closed = step(open="opened")
    opened = step()

    @guard("open")
    def nobody(self, execution: Any, user: str | None) -> bool:
        return False


class Inert(Workflow):
    """A single final step: no action at the initial step."""

    only = step()


def last_action(execution: Any, available: list[str]) -> str:
    """A callable policy: the last available action."""
    return available[-1]


def stop_at_once(execution: Any, available: list[str]) -> None:
    """A callable policy that never chooses."""
    return None


def failing_factory(session: Any, index: int) -> None:
    """A workflowable factory that cannot make a record."""
    raise LookupError(f"no record for execution {index}")
