"""Zero-argument functions for `flowscope bench` specifications: one does twice the other's work;
``changing`` does as much as ``BENCH_TARGET_WORK`` says (the same function, made slower between runs)."""

from __future__ import annotations

import os


def _work(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def single() -> int:
    return _work(2_000)


def double() -> int:
    return _work(4_000)


def changing() -> int:
    return _work(int(os.environ.get("BENCH_TARGET_WORK", "2000")))


def explode() -> None:
    raise RuntimeError("this benchmark target always fails")


NOT_CALLABLE = 42
