"""Workflows of the load-test benchmarks (a module, so worker processes can import them by name)."""

from __future__ import annotations

from typing import Any

from flowscope.workflows import Workflow, on, step

CRUNCH_ITERATIONS = 200_000     # ~15-20 ms of pure-Python arithmetic per action on this machine


class Trivial(Workflow):
    """Two steps and one action that flips between them: only the engine's own work."""

    ping = step(hit="pong")
    pong = step(hit="ping")


class Crunch(Workflow):
    """CPU-bound: each action computes for ~15-20 ms holding the GIL, then records a checksum."""

    a = step(work="b")
    b = step(work="a")

    @on("work")
    def crunch(self, execution: Any, user: str | None, context: dict[str, Any]) -> None:
        total = 0
        for i in range(CRUNCH_ITERATIONS):
            total = (total + i * i) % 1_000_003
        execution.context_data["checksum"] = total
