"""Caches the engine can use: workflow classes, step definitions, available actions.

    >>> owner = object()
    >>> enable(["workflow_definition", "step_definitions", "available_actions"], owner)
    >>> execution.available_actions("rita")     # guards run (and query) once ...
    >>> execution.available_actions("rita")     # ... then a hit, until the next transition
    >>> stats()["available_actions"].hits
    1
    >>> disable(owner)

What each cache saves, measured (tests/test_query_optimizer_caching.py):
- ``workflow_definition``: resolving ``execution.workflow_class`` (an import path) to its
  class: ``importlib.import_module`` plus an attribute walk, several times per action. Saves
  calls (microseconds), not queries.
- ``step_definitions``: a step's declared actions, per (workflow class, step). Saves calls.
- ``available_actions``: what the guards allow, per (execution id, version, step, user).
  Guards often read the database (the example DocumentApproval's guards load the document),
  so a UI that lists the actions of an execution on every request saves those queries.

Design decisions:
- The engine holds the caches in module globals of ``workflows/_runtime.py`` (``None`` = off,
  one global lookup); this module only installs and removes them, so the engine stays free
  of policy.
- Invalidation: the key of ``available_actions`` includes the execution's ``version``, which
  every transition, pause and resume changes, so a transition invalidates its execution's
  entries by construction. Guards that read *other* data (a document edited without a
  transition) can be stale for up to ``AVAILABLE_ACTIONS_TTL_SECONDS``; ``perform_action``
  never reads this cache (it always runs the guards), so a stale entry can show an action but
  never lets one through.
- Bounded LRU dictionaries with a lock (process-wide, any thread), hit and miss counts kept
  so an optimizer reports what the cache actually saved.
- Reference-counted per owner, as eager loading is.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...workflows import _runtime

CACHE_NAMES: tuple[str, ...] = ("workflow_definition", "step_definitions", "available_actions")
AVAILABLE_ACTIONS_TTL_SECONDS = 60.0
_SLOTS = {"workflow_definition": ("workflow_class_cache", 1024, None),
          "step_definitions": ("step_actions_cache", 4096, None),
          "available_actions": ("available_actions_cache", 10_000, AVAILABLE_ACTIONS_TTL_SECONDS)}


class UnknownCacheError(ValueError):
    """A cache name other than those in ``CACHE_NAMES``."""


@dataclass(frozen=True)
class CacheStats:
    """What one cache did since it was enabled: ``hits`` is work not done."""

    name: str
    hits: int
    misses: int
    size: int

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class CountingCache:
    """A bounded LRU mapping with an optional time to live, counting hits and misses."""

    def __init__(self, name: str, maxsize: int, ttl_seconds: float | None = None) -> None:
        self.name = name
        self.maxsize = maxsize
        self.ttl = ttl_seconds
        self._data: OrderedDict[Any, tuple[Any, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Any) -> Any:
        with self._lock:
            entry = self._data.get(key)
            if entry is None or (self.ttl is not None and time.monotonic() - entry[1] > self.ttl):
                if entry is not None:
                    del self._data[key]
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return entry[0]

    def __setitem__(self, key: Any, value: Any) -> None:
        with self._lock:
            self._data[key] = (value, time.monotonic())
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self.name, self.hits, self.misses, len(self._data))


_lock = threading.Lock()
_counts: Counter[str] = Counter()
_owners: dict[int, set[str]] = defaultdict(set)


def check_names(names: Iterable[str]) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(names))
    unknown = [n for n in names if n not in _SLOTS]
    if unknown:
        raise UnknownCacheError(f"unknown cache {unknown[0]!r}; choose from {', '.join(CACHE_NAMES)}")
    return names


def enable(names: Iterable[str], owner: object) -> tuple[str, ...]:
    """Install the named caches into the engine (kept until every owner disabled them)."""
    names = check_names(names)
    with _lock:
        mine = _owners[id(owner)]
        for name in names:
            if name in mine:
                continue
            mine.add(name)
            _counts[name] += 1
            attribute, maxsize, ttl = _SLOTS[name]
            if getattr(_runtime, attribute) is None:
                setattr(_runtime, attribute, CountingCache(name, maxsize, ttl))
    return names


def disable(owner: object) -> None:
    """Remove the caches ``owner`` enabled, unless another owner still uses them."""
    with _lock:
        for name in _owners.pop(id(owner), set()):
            _counts[name] -= 1
            if _counts[name] <= 0:
                del _counts[name]
                setattr(_runtime, _SLOTS[name][0], None)


def enabled(owner: object | None = None) -> tuple[str, ...]:
    with _lock:
        return tuple(n for n in CACHE_NAMES if (n in _counts if owner is None else n in _owners.get(id(owner), ())))


def stats() -> dict[str, CacheStats]:
    """Hits and misses of every installed cache."""
    out = {}
    for name in CACHE_NAMES:
        cache = getattr(_runtime, _SLOTS[name][0])
        if isinstance(cache, CountingCache):
            out[name] = cache.stats()
    return out


def disable_all() -> None:
    """Remove every cache, of every owner (tests; a process shutting the feature off)."""
    with _lock:
        _counts.clear()
        _owners.clear()
        for attribute, _, _ in _SLOTS.values():
            setattr(_runtime, attribute, None)
