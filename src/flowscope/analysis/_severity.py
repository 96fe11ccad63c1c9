"""Severity from how far a measurement is past its threshold (every finding rule uses this).

    >>> severity(12, 5), severity(5, 5), severity(20, 5)
    ('medium', 'low', 'high')
"""

from __future__ import annotations

from ._recommendation import Severity


def severity(measured: float, threshold: float) -> Severity:
    """``high`` from 4x the threshold, ``medium`` from 2x, else ``low``."""
    if measured >= 4 * threshold:
        return "high"
    if measured >= 2 * threshold:
        return "medium"
    return "low"
