"""Benchmarking: comparisons with real statistics (compare, statistics), load tests of a
workflow class (the ``_load_*`` family, workload defaults), memory stress, and their renderings.

``flowscope.performance`` re-exports what is public (``Benchmark``, ``compare``, ``load_test``, ...).
"""
