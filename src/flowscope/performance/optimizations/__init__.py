"""Optimizers: recommendations from measured data, and fixes that can be applied.

    >>> from flowscope.performance.optimizations import Recommendation
"""

from ._recommendation import KINDS, SEVERITIES, Evidence, Recommendation, Savings, most_valuable_first

__all__ = ["KINDS", "SEVERITIES", "Evidence", "Recommendation", "Savings", "most_valuable_first"]
