"""Cheap memory and garbage-collector probes, read at the start and end of every operation.

Design decision (measured on the build machine, CPython 3.11):
- current RSS: ``os.pread`` of ``/proc/self/statm`` on an fd opened once, ~0.9 us (a third of
  it the parse, which ``memory_mark`` defers);
  ``psutil.Process().memory_info()`` costs ~8.4 us and is only the fallback off Linux.
- peak RSS (high-water mark): ``getrusage(...).ru_maxrss``. Linux reports the *process's*
  high-water mark (its memory map's) for ``RUSAGE_THREAD`` as for ``RUSAGE_SELF``, but
  ``RUSAGE_SELF`` also sums the CPU times of every thread (0.55 us here, more with more
  threads) where ``RUSAGE_THREAD`` reads one (0.41 us). ``RUSAGE_THREAD`` is used only where it
  exists and gave the same value as ``RUSAGE_SELF`` at import (``_PEAK_WHO``). The operation's
  ``peak_increase_bytes`` is how much the process high-water mark rose while it ran (zero when
  the operation stayed under an earlier peak: that is what the kernel can tell cheaply).
- garbage collections: a ``gc.callbacks`` counter, so reading it costs nothing and
  ``gc.get_stats()`` (~0.9 us) is never called on the hot path.
A probe that fails on some platform reports 0; it never raises into the application.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux

try:
    import resource as _resource
except ImportError:  # Windows
    _resource = None  # type: ignore[assignment]


def _open_statm() -> int | None:
    try:
        return os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        return None


_statm_fd = _open_statm()
_psutil_process: Any = None


def _reopen_after_fork() -> None:
    # /proc/self was resolved when the file was opened: a forked child would read its parent's.
    global _statm_fd, _psutil_process
    _statm_fd = _open_statm()
    _psutil_process = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reopen_after_fork)


_pread = os.pread


def rss_bytes() -> int:
    """Resident set size of this process now, in bytes (0 if it cannot be read)."""
    try:
        return _parse_statm(_pread(_statm_fd, 64, 0))   # type: ignore[arg-type]
    except (TypeError, OSError, ValueError, IndexError):   # TypeError: no /proc (fd is None)
        return _psutil_rss()


def _parse_statm(line: bytes) -> int:
    """The RSS in bytes of a ``/proc/self/statm`` line (its second field, in pages)."""
    return int(line.split()[1]) * _PAGE_SIZE


def _psutil_rss() -> int:
    global _psutil_process
    try:
        if _psutil_process is None:
            import psutil

            _psutil_process = psutil.Process()
        return int(_psutil_process.memory_info().rss)
    except Exception:
        return 0


def _peak_who() -> int:
    """``RUSAGE_THREAD`` if it reports the process's high-water mark here, else ``RUSAGE_SELF``."""
    if _resource is None:
        return 0
    thread = getattr(_resource, "RUSAGE_THREAD", None)
    try:
        if thread is not None and sys.platform.startswith("linux"):
            self_peak = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss
            if _resource.getrusage(thread).ru_maxrss == self_peak:
                return thread
    except (OSError, ValueError):
        pass
    return _resource.RUSAGE_SELF


_PEAK_WHO = _peak_who()


_getrusage = _resource.getrusage if _resource is not None else None


def peak_rss_bytes() -> int:
    """The process's RSS high-water mark, in bytes (0 if unknown)."""
    try:
        return _getrusage(_PEAK_WHO).ru_maxrss * _MAXRSS_UNIT   # type: ignore[misc]
    except (TypeError, OSError, ValueError):   # TypeError: no resource module (Windows)
        return 0


def memory_mark() -> tuple[bytes | int, int]:
    """``(mark, peak_rss_bytes())``: what an operation reads at each end, RSS left unparsed.

    ``mark`` is the raw ``/proc/self/statm`` line (or, without /proc, the RSS in bytes); turn
    it into bytes with ``rss_of``. Two equal marks mean an unchanged RSS, so an operation
    parses its start mark only when the RSS moved (a parse is ~0.25 us of ~0.9 us per read).
    """
    try:
        return _pread(_statm_fd, 64, 0), _getrusage(_PEAK_WHO).ru_maxrss * _MAXRSS_UNIT   # type: ignore[arg-type,misc]
    except Exception:   # no /proc or no resource module here: each probe's own fallback
        return rss_bytes(), peak_rss_bytes()


def rss_of(mark: bytes | int) -> int:
    """The RSS in bytes that ``memory_mark()`` read."""
    if type(mark) is int:
        return mark
    try:
        return _parse_statm(mark)   # type: ignore[arg-type]
    except (ValueError, IndexError):
        return 0


class _GcCounter:
    """Counts finished garbage collections through ``gc.callbacks`` (all generations)."""

    collections = 0

    @classmethod
    def callback(cls, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            cls.collections += 1


if _GcCounter.callback not in gc.callbacks:
    gc.callbacks.append(_GcCounter.callback)


def gc_collections() -> int:
    """Garbage collections finished in this process since flowscope was imported."""
    return _GcCounter.collections
