"""Zero-argument functions for `flowscope bench` specifications: one does twice the other's work."""

from __future__ import annotations


def _work(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def single() -> int:
    return _work(2_000)


def double() -> int:
    return _work(4_000)


def explode() -> None:
    raise RuntimeError("this benchmark target always fails")


NOT_CALLABLE = 42
